"""Where a step's GPU time goes: runs octavo on a dummy model under PyTorch's profiler (CUPTI
traces every kernel in the process, octavo's included) and prints the kernels by total time.

    python bench/profile_step.py --model /tmp/llama3-8b --batch-size 1 --input-len 128 --output-len 32

Needs PyTorch with CUDA (the device machine has it); a diagnostic, not a benchmark: the
profiler adds overhead per launch, so compare its kernel times, not the wall time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--enforce-eager", action="store_true")
    parser.add_argument("--rows", type=int, default=25, help="kernels to list")
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from octavo import LLM, SamplingParams

    llm = LLM(args.model, load_format="dummy", dtype=args.dtype, max_model_len=args.max_model_len,
              enforce_eager=args.enforce_eager, max_num_seqs=max(args.batch_size, 1))
    rng = np.random.default_rng(0)
    prompts = [{"prompt_token_ids": rng.integers(100, 20000, args.input_len).tolist()}
               for _ in range(args.batch_size)]
    params = SamplingParams(max_tokens=args.output_len, ignore_eos=True)
    llm.generate(prompts, params, use_tqdm=False)  # warm-up
    start = time.perf_counter()
    llm.generate(prompts, params, use_tqdm=False)
    wall = time.perf_counter() - start
    print(f"unprofiled: {wall * 1000:.1f} ms for {args.output_len} tokens "
          f"({wall * 1000 / args.output_len:.2f} ms per output token, prefill included)")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        llm.generate(prompts, params, use_tqdm=False)
        torch.cuda.synchronize()
    averages = prof.key_averages()
    for key in ("device_time_total", "cuda_time_total"):
        try:
            print(averages.table(sort_by=key, row_limit=args.rows, max_name_column_width=70))
            break
        except (AttributeError, KeyError, ValueError):
            continue


if __name__ == "__main__":
    main()
