"""`octavo bench throughput`: offline throughput, as vLLM's `vllm bench throughput`.

All requests are handed to the engine at once and the one call that runs them is timed
(no warm-up, as vLLM). Random prompts are random token ids; octavo samples at temperature
1.0 with ignore_eos (vLLM's settings) and HF decodes greedily with min_new_tokens, so every
request generates exactly its expected number of tokens and the counts are exact.

--sweep-max-num-seqs 1,4,16,64 repeats the run per value on the same prompts (a fresh
engine each), --compare-hf does it for octavo and hf, and --plot FILE.png draws
requests/s and output tokens/s against max_num_seqs (needs matplotlib).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from typing import Any

from octavo.bench import plots
from octavo.bench.backends import (DEFAULT_MAX_NUM_SEQS, add_engine_args, args_for_json, make_backend,
                                   model_config)
from octavo.bench.datasets import SampleRequest, random_requests, sharegpt_requests, usable_token_ids

DEFAULT_INPUT_LEN = 1024
DEFAULT_OUTPUT_LEN = 128


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    """Adds the throughput options (vLLM's names) to `parser`."""
    add_engine_args(parser)
    parser.add_argument("--dataset-name", default="random", choices=("random", "sharegpt"))
    parser.add_argument("--dataset-path", default=None, help="the ShareGPT JSON file (--dataset-name sharegpt)")
    parser.add_argument("--input-len", type=int, default=DEFAULT_INPUT_LEN,
                        help=f"prompt tokens per random request (default {DEFAULT_INPUT_LEN})")
    parser.add_argument("--output-len", type=int, default=None,
                        help=f"tokens to generate per request (default {DEFAULT_OUTPUT_LEN}; "
                             "sharegpt: each reply's length unless given)")
    parser.add_argument("--num-prompts", type=int, default=1000)
    parser.add_argument("--prefix-len", type=int, default=0,
                        help="random dataset: a shared prefix of this many random tokens before each prompt")
    parser.add_argument("--random-range-ratio", type=float, default=0.0,
                        help="random lengths uniform in [len * (1 - r), len * (1 + r)]")
    parser.add_argument("--disable-tqdm", action="store_true", help="no progress bar (octavo backend)")
    plots.add_sweep_args(parser, "--sweep-max-num-seqs",
                         "run once per max_num_seqs value (octavo's running batch, hf's static batch size), "
                         "same prompts, e.g. 1,4,16,64")


def sample_requests(args: argparse.Namespace, tokenizer: Any) -> list[SampleRequest]:
    """The requests --dataset-name asks for. Raises ValueError for a bad combination of options."""
    if args.num_prompts < 1:
        raise ValueError(f"--num-prompts must be >= 1, got {args.num_prompts}")
    config = model_config(args)
    if args.dataset_name == "sharegpt":
        if not args.dataset_path:
            raise ValueError("--dataset-name sharegpt needs --dataset-path (a local JSON file; nothing is downloaded)")
        if tokenizer is None:
            raise ValueError("--dataset-name sharegpt needs a tokenizer")
        max_len = args.max_model_len or config.get("max_position_embeddings")
        return sharegpt_requests(args.dataset_path, tokenizer, args.num_prompts, output_len=args.output_len,
                                 max_model_len=max_len, seed=args.seed)
    if args.dataset_path:
        raise ValueError("--dataset-path is only read with --dataset-name sharegpt")
    output_len = DEFAULT_OUTPUT_LEN if args.output_len is None else args.output_len
    token_ids = usable_token_ids(tokenizer, int(config["vocab_size"]))
    return random_requests(args.num_prompts, args.input_len, output_len, token_ids=token_ids,
                           range_ratio=args.random_range_ratio, seed=args.seed, prefix_len=args.prefix_len)


def _measure(backend: Any, requests: list[SampleRequest], args: argparse.Namespace) -> dict[str, Any]:
    """Times one run of all requests and prints vLLM's summary; returns vLLM's fields and the counts."""
    run = backend.prepare(requests, use_tqdm=not args.disable_tqdm)
    start = time.perf_counter()
    generated = run()
    elapsed = time.perf_counter() - start

    expected = [r.expected_output_len for r in requests]
    if generated != expected:
        bad = sum(g != e for g, e in zip(generated, expected))
        raise RuntimeError(f"{bad} of {len(requests)} requests did not generate their expected number of tokens")
    prompt_tokens = sum(r.prompt_len for r in requests)
    output_tokens = sum(expected)
    total_tokens = prompt_tokens + output_tokens
    result = {
        "elapsed_time": elapsed,
        "num_requests": len(requests),
        "total_num_tokens": total_tokens,
        "requests_per_second": len(requests) / elapsed,
        "tokens_per_second": total_tokens / elapsed,
        "output_tokens_per_second": output_tokens / elapsed,
        "total_prompt_tokens": prompt_tokens,
        "total_output_tokens": output_tokens,
        "backend": backend.name,
        "startup_time": getattr(backend, "startup_time", None),
    }
    llm = getattr(backend, "llm", None)
    if llm is not None:
        # Engine counters since start-up (this is the engine's first run): prompt tokens
        # found in the prefix cache and the prompt tokens actually computed.
        stats = llm._engine.stats()
        result["prefix_cache_queries"] = stats.num_prefix_cache_queries
        result["prefix_cache_hits"] = stats.num_prefix_cache_hits
        result["prompt_tokens_computed"] = stats.num_prompt_tokens_computed
        if args.prefix_len:
            print(f"Prefix cache: {stats.num_prefix_cache_hits} of {stats.num_prefix_cache_queries} "
                  f"prompt tokens hit; {stats.num_prompt_tokens_computed} computed")
    print(f"Throughput: {result['requests_per_second']:.2f} requests/s, "
          f"{result['tokens_per_second']:.2f} total tokens/s, "
          f"{result['output_tokens_per_second']:.2f} output tokens/s")
    print(f"Total num prompt tokens:  {prompt_tokens}")
    print(f"Total num output tokens:  {output_tokens}")
    return result


def _workload(args: argparse.Namespace, requests: list[SampleRequest]) -> str:
    """The requests in words, for the figure's title."""
    n = len(requests)
    if args.dataset_name == "sharegpt":
        mean_in = sum(r.prompt_len for r in requests) / n
        mean_out = sum(r.expected_output_len for r in requests) / n
        return f"ShareGPT, {n} prompts, mean {mean_in:.0f} tokens in / {mean_out:.0f} out"
    output_len = DEFAULT_OUTPUT_LEN if args.output_len is None else args.output_len
    spread = f" (\u00b1{args.random_range_ratio:.0%})" if args.random_range_ratio else ""
    return f"{n} random prompts, {args.input_len} tokens in / {output_len} out{spread}"


def run_throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Builds the backend, times one run of all requests, prints the summary; returns the results.

    The result has vLLM's fields (elapsed_time, num_requests, total_num_tokens,
    requests_per_second, tokens_per_second, output_tokens_per_second), plus
    total_prompt_tokens, total_output_tokens, backend and args; it is also written to
    --output-json when given. Token counts are the requests' (prompt + expected output);
    a RuntimeError is raised if the backend generated a different number of tokens.

    With --sweep-max-num-seqs and/or --compare-hf, the benchmark runs once per (backend,
    max_num_seqs) on the same requests, each point a fresh engine as a separate run with
    --max-num-seqs N would build, and the result is {"sweep_parameter": "max_num_seqs",
    "sweep": [one dict per point: the fields above less args, plus max_num_seqs], "args"}.
    --plot FILE writes requests/s and output tokens/s against max_num_seqs as a PNG.
    Raises ValueError / OSError / ImportError for bad options, a missing model, a missing
    torch (hf) or a missing matplotlib (--plot).
    """
    sweep = args.sweep_max_num_seqs
    if sweep is not None and args.max_num_seqs is not None:
        raise ValueError("give --max-num-seqs or --sweep-max-num-seqs, not both")
    backends = plots.backends_to_run(args)
    plots.check_plot_target(args)
    values = sweep or [args.max_num_seqs]
    points: list[dict[str, Any]] = []
    requests: list[SampleRequest] | None = None
    for name in backends:
        for value in values:
            point_args = copy.copy(args)
            point_args.backend, point_args.max_num_seqs = name, value
            if len(backends) > 1 or sweep is not None:
                print(f"== max_num_seqs {value or DEFAULT_MAX_NUM_SEQS}, backend {name} ==")
            backend = make_backend(point_args)
            if requests is None:
                requests = sample_requests(args, backend.tokenizer)
            point = _measure(backend, requests, point_args)
            point["max_num_seqs"] = value or DEFAULT_MAX_NUM_SEQS
            points.append(point)
            del backend
            plots.release_memory()
    assert requests is not None

    if sweep is None and len(backends) == 1:
        result = {k: v for k, v in points[0].items() if k != "max_num_seqs"}
        result["args"] = args_for_json(args)
    else:
        plots.print_table(
            ("max_num_seqs", "backend", "requests/s", "output tokens/s", "total tokens/s"),
            [(p["max_num_seqs"], p["backend"], p["requests_per_second"], p["output_tokens_per_second"],
              p["tokens_per_second"]) for p in points])
        result = {"sweep_parameter": "max_num_seqs", "sweep": points, "args": args_for_json(args)}
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump(result, f, indent=4)
    if args.plot:
        title = (f"octavo bench throughput: {plots.model_label(args.model)}\n"
                 f"{_workload(args, requests)}, dtype {args.dtype}")
        plots.plot_throughput(points, args.plot, title=title)
        print(f"Plot written to {args.plot}")
    return result
