"""`octavo bench throughput`: offline throughput, as vLLM's `vllm bench throughput`.

All requests are handed to the engine at once and the one call that runs them is timed
(no warm-up, as vLLM). Random prompts are random token ids; octavo samples at temperature
1.0 with ignore_eos (vLLM's settings) and HF decodes greedily with min_new_tokens, so every
request generates exactly its expected number of tokens and the counts are exact.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from octavo.bench.backends import add_engine_args, args_for_json, make_backend, model_config
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
    parser.add_argument("--random-range-ratio", type=float, default=0.0,
                        help="random lengths uniform in [len * (1 - r), len * (1 + r)]")
    parser.add_argument("--disable-tqdm", action="store_true", help="no progress bar (octavo backend)")


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
                           range_ratio=args.random_range_ratio, seed=args.seed)


def run_throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Builds the backend, times one run of all requests, prints the summary; returns the results.

    The result has vLLM's fields (elapsed_time, num_requests, total_num_tokens,
    requests_per_second, tokens_per_second, output_tokens_per_second), plus
    total_prompt_tokens, total_output_tokens, backend and args; it is also written to
    --output-json when given. Token counts are the requests' (prompt + expected output);
    a RuntimeError is raised if the backend generated a different number of tokens.
    Raises ValueError / OSError / ImportError for bad options, a missing model or a missing torch.
    """
    backend = make_backend(args)
    requests = sample_requests(args, backend.tokenizer)
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
        "args": args_for_json(args),
    }
    print(f"Throughput: {result['requests_per_second']:.2f} requests/s, "
          f"{result['tokens_per_second']:.2f} total tokens/s, "
          f"{result['output_tokens_per_second']:.2f} output tokens/s")
    print(f"Total num prompt tokens:  {prompt_tokens}")
    print(f"Total num output tokens:  {output_tokens}")
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump(result, f, indent=4)
    return result
