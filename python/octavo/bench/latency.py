"""`octavo bench latency`: the time to run one batch end to end, as vLLM's `vllm bench latency`.

One batch of --batch-size random prompts of --input-len tokens, each generating exactly
--output-len tokens (octavo: temperature 1.0, ignore_eos; HF: greedy with min_new_tokens),
run --num-iters-warmup times untimed and --num-iters times timed.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from octavo.bench.backends import add_engine_args, args_for_json, make_backend, model_config
from octavo.bench.datasets import random_requests, usable_token_ids

PERCENTAGES = (10, 25, 50, 75, 90, 99)


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    """Adds the latency options (vLLM's names) to `parser`."""
    add_engine_args(parser)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--input-len", type=int, default=32)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--num-iters-warmup", type=int, default=10)
    parser.add_argument("--num-iters", type=int, default=30)


def run_latency(args: argparse.Namespace) -> dict[str, Any]:
    """Times --num-iters runs of one batch, prints the summary; returns the results.

    The result holds avg_latency and latencies (seconds), percentiles ({"10": s, ..., "99": s}
    once written as JSON), ms_per_output_token (avg_latency / output_len, prefill included),
    backend and args; it is also written to --output-json when given. Raises ValueError for
    bad sizes, RuntimeError if a run generates the wrong number of tokens, and what the
    backend raises (ValueError / OSError / ImportError).
    """
    for name in ("batch_size", "input_len", "output_len", "num_iters"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.num_iters_warmup < 0:
        raise ValueError(f"--num-iters-warmup must be >= 0, got {args.num_iters_warmup}")
    backend = make_backend(args)
    token_ids = usable_token_ids(backend.tokenizer, int(model_config(args)["vocab_size"]))
    requests = random_requests(args.batch_size, args.input_len, args.output_len, token_ids=token_ids, seed=args.seed)
    run = backend.prepare(requests)
    expected = [args.output_len] * args.batch_size

    def timed() -> float:
        start = time.perf_counter()
        generated = run()
        elapsed = time.perf_counter() - start
        if generated != expected:
            raise RuntimeError(f"a batch generated {generated} tokens, expected {args.output_len} each")
        return elapsed

    for _ in range(args.num_iters_warmup):
        timed()
    latencies = [timed() for _ in range(args.num_iters)]
    avg = float(np.mean(latencies))
    percentiles = dict(zip(PERCENTAGES, (float(v) for v in np.percentile(latencies, PERCENTAGES))))
    ms_per_token = avg * 1000.0 / args.output_len
    print(f"Avg latency: {avg} seconds")
    for p, value in percentiles.items():
        print(f"{p}% percentile latency: {value} seconds")
    print(f"Avg time per output token: {ms_per_token:.3f} ms "
          f"(batch of {args.batch_size}, {args.input_len} in / {args.output_len} out, prefill included)")
    result = {
        "avg_latency": avg,
        "latencies": latencies,
        "percentiles": percentiles,
        "ms_per_output_token": ms_per_token,
        "backend": backend.name,
        "args": args_for_json(args),
    }
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump(result, f, indent=4)
    return result
