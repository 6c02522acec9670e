"""octavo vs HF transformers on the CPU, same batch, one run (issue: engine spine target).

64 prompts of 128 random tokens in, 64 tokens out (ignore_eos), greedy, float32, on a small
random Llama (4 layers x hidden 512 by default). Both sides get a warm-up run, then
--repeats timed runs; the median and the spread are printed, with the ratio.

    python bench/cpu_vs_hf.py [--num-prompts 64 --input-len 128 --output-len 64 --repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np


def make_model(path: str, args) -> str:
    from octavo.testing.tiny_models import make_tiny_model

    return make_tiny_model(path, "llama", vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                           num_layers=args.num_layers, num_heads=args.num_heads, num_kv_heads=args.num_kv_heads,
                           intermediate_size=args.intermediate_size, max_position_embeddings=1024)


def run_octavo(model_dir: str, prompts: list[list[int]], args) -> list[float]:
    from octavo import LLM, SamplingParams

    llm = LLM(model_dir, max_num_seqs=max(args.num_prompts, 1), max_model_len=1024, seed=0)
    sp = SamplingParams(temperature=0.0, max_tokens=args.output_len, ignore_eos=True)
    inputs = [{"prompt_token_ids": p} for p in prompts]
    llm.generate(inputs, sp, use_tqdm=False)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        outs = llm.generate(inputs, sp, use_tqdm=False)
        times.append(time.perf_counter() - start)
        assert all(len(o.outputs[0].token_ids) == args.output_len for o in outs)
    return times


def run_hf(model_dir: str, prompts: list[list[int]], args) -> list[float]:
    from octavo.bench.hf_backend import HFRunner

    # All prompts in one batch; they share one length, so nothing is padded.
    runner = HFRunner(model_dir, dtype="float32", device="cpu", pad_token_id=0)

    def once():
        out = runner.generate(prompts, args.output_len, max_batch_size=len(prompts))
        assert all(len(tokens) == args.output_len for tokens in out)

    once()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return times


def summary(name: str, times: list[float], args) -> dict:
    med = statistics.median(times)
    out_tok = args.num_prompts * args.output_len
    total_tok = args.num_prompts * (args.input_len + args.output_len)
    print(f"{name:8s} median {med:7.3f} s  (min {min(times):.3f}, max {max(times):.3f})  "
          f"{args.num_prompts / med:7.2f} req/s  {total_tok / med:9.1f} total tok/s  {out_tok / med:8.1f} out tok/s")
    return {"median_s": med, "times_s": times, "requests_per_s": args.num_prompts / med,
            "total_tokens_per_s": total_tok / med, "output_tokens_per_s": out_tok / med}


def gemm_ceiling_gflops() -> float:
    """fp32 GEMM rate of this machine (numpy's BLAS, 2048^3, best of 5): the compute ceiling."""
    a = np.random.default_rng(1).random((2048, 2048), dtype=np.float32)
    b = np.random.default_rng(2).random((2048, 2048), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(5))
    return 2 * 2048**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def workload_gflop(args) -> float:
    """Dense-layer FLOPs of the run (attention is small at these lengths): every prompt
    token through the layers, every output token's row through the layers and the LM head."""
    h, inter, layers, heads, kv = (args.hidden_size, args.intermediate_size, args.num_layers,
                                   args.num_heads, args.num_kv_heads)
    head_dim = h // heads
    per_token = layers * (h * (heads + 2 * kv) * head_dim + heads * head_dim * h + 3 * h * inter)
    lm_head = h * args.vocab_size
    # The last prompt token and every output token but the last produce logits (vLLM does the same).
    tokens_through_layers = args.num_prompts * (args.input_len + args.output_len - 1)
    logit_rows = args.num_prompts * args.output_len
    return 2 * (tokens_through_layers * per_token + logit_rows * lm_head) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-prompts", type=int, default=64)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--hidden-size", type=int, default=512)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--num-heads", type=int, default=8)
    p.add_argument("--num-kv-heads", type=int, default=8)
    p.add_argument("--intermediate-size", type=int, default=1536)
    p.add_argument("--vocab-size", type=int, default=32000)
    p.add_argument("--output-json", default=None)
    args = p.parse_args()

    os.environ.setdefault("OCTAVO_LOG", "quiet")
    rng = np.random.default_rng(0)
    prompts = rng.integers(10, args.vocab_size, size=(args.num_prompts, args.input_len)).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_model(os.path.join(tmp, "model"), args)
        print(f"model: llama {args.num_layers} layers x hidden {args.hidden_size}, vocab {args.vocab_size}; "
              f"{args.num_prompts} prompts x {args.input_len} in / {args.output_len} out; {os.cpu_count()} CPUs")
        octavo = summary("octavo", run_octavo(model_dir, prompts, args), args)
        hf = summary("hf", run_hf(model_dir, prompts, args), args)
    ratio = hf["median_s"] / octavo["median_s"]
    print(f"octavo / hf throughput: {ratio:.2f}x")
    ceiling = gemm_ceiling_gflops()
    gflop = workload_gflop(args)
    floor = gflop / ceiling
    print(f"ceiling: fp32 GEMM {ceiling:.0f} GFLOP/s on this machine; the run is {gflop:.0f} GFLOP of dense layers, "
          f"so no engine finishes it in less than {floor:.2f} s (octavo at {floor / octavo['median_s']:.0%} "
          f"of that ceiling, hf at {floor / hf['median_s']:.0%})")
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump({"octavo": octavo, "hf": hf, "ratio": ratio, "gemm_ceiling_gflops": ceiling,
                       "workload_gflop": gflop, "floor_s": floor, "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
