"""PyTorch's scaled_dot_product_attention on the prefill shapes of octavo_bench_kernels, to
put octavo's prefill attention TFLOP/s beside it (issue 4's target: >= 0.7x of SDPA).

One causal sequence of T tokens, 32 query heads x head_dim 128, bf16, with 8 kv heads
(Llama-3-8B, GQA) and with 32 (MHA); timed with CUDA events, median of --reps calls after
--warmup. FLOPs are counted as octavo's benchmark does for a causal prompt, QK^T and PV at
2 per multiply-add over the visible half: 2 * 2 * T^2 / 2 * heads * head_dim. Each row
names the SDPA backend: "default" (what PyTorch picks) and, where this PyTorch offers
them, flash / cudnn / efficient forced one at a time.

    python3 bench/sdpa_prefill.py [--tokens 1024 8192] [--json out.json]
"""

import argparse
import json
import statistics
import sys

import torch
import torch.nn.functional as F


def time_ms(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def backends():
    """(name, context manager factory or None) for default and each forced backend."""
    out = [("default", None)]
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # older PyTorch: the default only
        return out
    for name in ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION"):
        if hasattr(SDPBackend, name):
            out.append((name.split("_")[0].lower(), lambda b=getattr(SDPBackend, name): sdpa_kernel([b])))
    return out


def attention_call(q, k, v):
    """A causal SDPA call; GQA natively where PyTorch has enable_gqa, else K/V repeated
    (the same FLOPs, more K/V bytes)."""
    if k.shape[1] == q.shape[1]:
        return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    try:
        F.scaled_dot_product_attention(q[:, :, :2], k[:, :, :2], v[:, :, :2], is_causal=True, enable_gqa=True)
        return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    except (TypeError, RuntimeError):
        group = q.shape[1] // k.shape[1]
        k_rep = k.repeat_interleave(group, dim=1)
        v_rep = v.repeat_interleave(group, dim=1)
        return lambda: F.scaled_dot_product_attention(q, k_rep, v_rep, is_causal=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, nargs="+", default=[1024, 8192])
    ap.add_argument("--q-heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", help="write the rows here as a JSON list")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("sdpa_prefill.py needs a CUDA device")

    torch.manual_seed(0)
    dev = torch.device("cuda")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(dev)}, bf16, causal")
    print(f"{'backend':<10} {'shape':<34} {'ms':>9} {'TFLOP/s':>9}")
    rows = []
    for t in args.tokens:
        for kv_heads in args.kv_heads:
            shape = f"t={t} hq={args.q_heads} hkv={kv_heads} d={args.head_dim} causal"
            q = torch.randn(1, args.q_heads, t, args.head_dim, device=dev, dtype=torch.bfloat16)
            k = torch.randn(1, kv_heads, t, args.head_dim, device=dev, dtype=torch.bfloat16)
            v = torch.randn(1, kv_heads, t, args.head_dim, device=dev, dtype=torch.bfloat16)
            flops = 2 * 2 * t * t / 2 * args.q_heads * args.head_dim
            for name, ctx in backends():
                try:
                    if ctx is None:
                        ms = time_ms(attention_call(q, k, v), args.warmup, args.reps)
                    else:
                        with ctx():
                            ms = time_ms(attention_call(q, k, v), args.warmup, args.reps)
                except RuntimeError as e:  # backend not available for this shape / device
                    print(f"{name:<10} {shape:<34} unavailable: {str(e).splitlines()[0][:60]}")
                    continue
                tflops = flops / (ms * 1e-3) / 1e12
                print(f"{name:<10} {shape:<34} {ms:9.3f} {tflops:9.1f}")
                rows.append({"backend": name, "tokens": t, "q_heads": args.q_heads, "kv_heads": kv_heads,
                             "head_dim": args.head_dim, "ms": ms, "tflops": tflops,
                             "torch": torch.__version__})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
