"""`octavo bench latency`: the time to run one batch end to end, as vLLM's `vllm bench latency`.

One batch of --batch-size random prompts of --input-len tokens, each generating exactly
--output-len tokens (octavo: temperature 1.0, ignore_eos; HF: greedy with min_new_tokens),
run --num-iters-warmup times untimed and --num-iters times timed.

--sweep-batch-size 1,2,4,8 measures each batch size in turn (the first b of the same
prompts), --compare-hf does it for octavo and hf, and --plot FILE.png draws the median and
p90 latency and the ms per output token against batch size (needs matplotlib).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from typing import Any

import numpy as np

from octavo.bench import plots
from octavo.bench.backends import Run, add_engine_args, args_for_json, make_backend, model_config
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
    plots.add_sweep_args(parser, "--sweep-batch-size",
                         "measure once per batch size (replaces --batch-size), same prompts, e.g. 1,2,4,8")


def _measure(run: Run, batch_size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Warms up, times --num-iters runs of one batch and prints vLLM's summary; returns the point."""
    expected = [args.output_len] * batch_size

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
          f"(batch of {batch_size}, {args.input_len} in / {args.output_len} out, prefill included)")
    return {
        "avg_latency": avg,
        "latencies": latencies,
        "percentiles": percentiles,
        "ms_per_output_token": ms_per_token,
    }


def run_latency(args: argparse.Namespace) -> dict[str, Any]:
    """Times --num-iters runs of one batch, prints the summary; returns the results.

    The result holds avg_latency and latencies (seconds), percentiles ({"10": s, ..., "99": s}
    once written as JSON), ms_per_output_token (avg_latency / output_len, prefill included),
    backend and args; it is also written to --output-json when given.

    With --sweep-batch-size and/or --compare-hf, each (backend, batch size) is measured in
    turn (warm-up included) on one engine per backend; batch size b takes the first b of the
    same prompts. The result is then {"sweep_parameter": "batch_size", "sweep": [one dict per
    point: the fields above less args, plus batch_size], "args"}. --plot FILE writes the
    median and p90 latency and the ms per output token against batch size as a PNG.
    Raises ValueError for bad sizes, RuntimeError if a run generates the wrong number of
    tokens, and what the backend raises (ValueError / OSError / ImportError), ImportError
    for --plot without matplotlib.
    """
    for name in ("batch_size", "input_len", "output_len", "num_iters"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.num_iters_warmup < 0:
        raise ValueError(f"--num-iters-warmup must be >= 0, got {args.num_iters_warmup}")
    sweep = args.sweep_batch_size
    backends = plots.backends_to_run(args)
    plots.check_plot_target(args)
    sizes = sweep or [args.batch_size]
    points: list[dict[str, Any]] = []
    requests = None
    for name in backends:
        point_args = copy.copy(args)
        point_args.backend = name
        backend = make_backend(point_args)
        if requests is None:
            token_ids = usable_token_ids(backend.tokenizer, int(model_config(args)["vocab_size"]))
            requests = random_requests(max(sizes), args.input_len, args.output_len, token_ids=token_ids,
                                       seed=args.seed)
        for size in sizes:
            if len(backends) > 1 or sweep is not None:
                print(f"== batch size {size}, backend {name} ==")
            point = _measure(backend.prepare(requests[:size]), size, args)
            points.append({"batch_size": size, **point, "backend": backend.name})
        del backend
        plots.release_memory()

    if sweep is None and len(backends) == 1:
        result = {k: v for k, v in points[0].items() if k != "batch_size"}
        result["args"] = args_for_json(args)
    else:
        plots.print_table(
            ("batch_size", "backend", "median latency (s)", "p90 latency (s)", "ms/output token"),
            [(p["batch_size"], p["backend"], p["percentiles"][50], p["percentiles"][90], p["ms_per_output_token"])
             for p in points])
        result = {"sweep_parameter": "batch_size", "sweep": points, "args": args_for_json(args)}
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump(result, f, indent=4)
    if args.plot:
        title = (f"octavo bench latency: {plots.model_label(args.model)}\n"
                 f"{args.input_len} tokens in / {args.output_len} out per request, dtype {args.dtype}, "
                 f"{args.num_iters} timed runs after {args.num_iters_warmup} warm-up")
        plots.plot_latency(points, args.plot, title=title)
        print(f"Plot written to {args.plot}")
    return result
