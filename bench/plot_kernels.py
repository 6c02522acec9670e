#!/usr/bin/env python3
"""Roofline of an octavo_bench_kernels run: reads its --json output and writes a PNG.

    python bench/plot_kernels.py kernels.json [-o kernels.png]

x is arithmetic intensity (FLOP per byte moved), y achieved GFLOP/s, both log scale; the
roof is the two ceilings measured at the start of the same run (memory copy bandwidth
times intensity, capped by the GEMM rate). Ops without FLOPs (KV-cache write, embedding)
have no place on it and are listed beside the plot with their GB/s. matplotlib is
optional for octavo: without it this script exits with a message saying how to get it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

# One colour and marker per op, stable across runs so two plots compare at a glance.
OP_STYLES: dict[str, tuple[str, str]] = {
    "decode_attention": ("tab:blue", "o"),
    "prefill_attention": ("tab:cyan", "D"),
    "rms_norm": ("tab:orange", "s"),
    "add_rms_norm": ("tab:brown", "s"),
    "rope": ("tab:green", "^"),
    "silu_mul": ("tab:olive", "v"),
    "sample_greedy": ("tab:purple", "P"),
    "sample_top_p": ("tab:pink", "P"),
    "sample_full": ("magenta", "X"),
    "gemm": ("tab:red", "*"),
}
DEFAULT_STYLE = ("tab:gray", "x")


def load_run(path: Path) -> dict[str, Any]:
    """The parsed JSON of one run; raises SystemExit with a message if it is not one."""
    try:
        run = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"plot_kernels.py: cannot read {path}: {e}") from None
    for key in ("ceilings", "results", "machine", "backend"):
        if key not in run:
            raise SystemExit(f"plot_kernels.py: {path} is not octavo_bench_kernels --json output (no {key!r})")
    return run


def plot(run: dict[str, Any], out: Path) -> None:
    """Writes the roofline PNG of `run` to `out`."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise SystemExit("plot_kernels.py needs matplotlib: pip install matplotlib") from None

    bandwidth = run["ceilings"]["memory"]["gbps"]  # GB/s
    peak = run["ceilings"]["gemm"]["gflops"]  # GFLOP/s
    ridge = peak / bandwidth
    on_roof = [r for r in run["results"] if r["flops"] > 0 and r["bytes"] > 0 and r["gflops"] > 0]
    off_roof = [r for r in run["results"] if r not in on_roof]

    fig = Figure(figsize=(14, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax, side = fig.subplots(1, 2, width_ratios=[3, 1.45])
    ax.set_xscale("log")
    ax.set_yscale("log")

    intensities = [r["intensity_flop_per_byte"] for r in on_roof] + [ridge]
    x_lo = min(intensities) / 3
    x_hi = max(intensities) * 3
    xs = [x_lo * (x_hi / x_lo) ** (i / 200) for i in range(201)]
    ax.plot(xs, [min(peak, x * bandwidth) for x in xs], color="black", linewidth=2, zorder=1)
    ax.annotate(f"memory copy {bandwidth:.1f} GB/s", xy=(x_lo * 1.1, x_lo * 1.1 * bandwidth),
                xytext=(0, 8), textcoords="offset points", fontsize=9)
    ax.annotate(f"GEMM {peak:.1f} GFLOP/s", xy=(ridge * 1.2, peak), xytext=(0, 5),
                textcoords="offset points", fontsize=9)
    ax.axvline(ridge, color="black", linestyle=":", linewidth=1, zorder=1)
    ax.annotate(f"ridge {ridge:.1f} FLOP/B", xy=(ridge, peak / 30), xytext=(4, 0),
                textcoords="offset points", fontsize=8, rotation=90)

    # Points carry a number; the side panel says what each is. Numbers of points that
    # land on one spot (same intensity, similar rate) are stacked rather than overprinted.
    seen: set[str] = set()
    placed: list[tuple[float, float, int]] = []
    legend_lines = []
    for i, r in enumerate(on_roof, start=1):
        colour, marker = OP_STYLES.get(r["name"], DEFAULT_STYLE)
        x, y = r["intensity_flop_per_byte"], r["gflops"]
        ax.scatter(x, y, color=colour, marker=marker, s=60, edgecolors="black", linewidths=0.5,
                   label=r["name"] if r["name"] not in seen else None, zorder=3)
        seen.add(r["name"])
        stack = sum(1 for px, py, _ in placed if abs(math.log10(px / x)) < 0.08 and abs(math.log10(py / y)) < 0.06)
        placed.append((x, y, i))
        ax.annotate(str(i), xy=(x, y), xytext=(6 + 14 * stack, -3), textcoords="offset points", fontsize=7.5,
                    color=colour, fontweight="bold")
        legend_lines.append(f"{i:2d} {r['name']:<17} {r['shape']}  {r['percent_of_ceiling']:.0f}%")
    for r in off_roof:
        legend_lines.append(f"   {r['name']:<17} {r['shape']}  {r['gbps']:.1f} GB/s {r['percent_of_ceiling']:.0f}%")

    ax.set_xlabel("arithmetic intensity (FLOP / byte moved)")
    ax.set_ylabel("achieved GFLOP/s (median)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="lower right", fontsize=8)
    machine, backend = run["machine"], run["backend"]
    ax.set_title(f"octavo kernels: {backend['name']} backend ({backend['compute_dtype']}, "
                 f"{backend['threads']} threads) on {machine['cpu_model']}, {run.get('date_utc', '')}",
                 fontsize=10)

    side.axis("off")
    header = ["% of the ceiling that binds each case", "(memory below the ridge, GEMM above);",
              "unnumbered: no FLOPs, memory only", ""]
    side.text(0.0, 1.0, "\n".join(header + legend_lines), transform=side.transAxes, va="top", ha="left",
              fontsize=7, family="monospace")
    fig.savefig(out, dpi=130)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="output of octavo_bench_kernels --json FILE")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="PNG to write (default: the JSON's path with .png)")
    args = parser.parse_args(argv)
    run = load_run(args.json)
    out = args.output or args.json.with_suffix(".png")
    plot(run, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
