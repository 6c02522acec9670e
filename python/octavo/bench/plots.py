"""Sweeps and their figures: `--sweep-max-num-seqs` / `--sweep-batch-size`, `--compare-hf`, `--plot FILE`.

A sweep runs a benchmark once per value with the same prompts; `--compare-hf` runs it (or
the single run) for octavo and for HF transformers. `--plot FILE` writes a PNG of the
points; without a sweep it is a one-point figure. matplotlib is optional: it is imported
only when --plot is given (Agg canvas, no pyplot, so no global backend is switched), and
checked before any benchmark runs.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def int_list(text: str) -> list[int]:
    """argparse type for "1,4,16": positive integers, no repeats, kept in the given order."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,4,16, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one value")
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"values must be >= 1, got {text!r}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"repeated value in {text!r}")
    return values


def add_sweep_args(parser: argparse.ArgumentParser, flag: str, help_text: str) -> None:
    """Adds the sweep flag (e.g. --sweep-max-num-seqs), --compare-hf and --plot."""
    parser.add_argument(flag, type=int_list, default=None, metavar="N,N,...", help=help_text)
    parser.add_argument("--compare-hf", action="store_true",
                        help="run the benchmark (each sweep point) with octavo and then with hf, same prompts; "
                             "needs torch")
    parser.add_argument("--plot", default=None, metavar="FILE.png",
                        help="write a PNG figure of the results (needs matplotlib); "
                             "without a sweep flag it shows the one point")


def backends_to_run(args: argparse.Namespace) -> list[str]:
    """["octavo", "hf"] with --compare-hf, else [--backend]. ValueError for --compare-hf --backend hf."""
    if args.compare_hf:
        if args.backend != "octavo":
            raise ValueError("--compare-hf runs both octavo and hf; leave --backend at its default")
        return ["octavo", "hf"]
    return [args.backend]


def _import_matplotlib() -> tuple[Any, Any, Any]:
    """(Figure, FigureCanvasAgg, ticker), or ImportError saying how to install matplotlib."""
    try:
        from matplotlib import ticker
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(f"--plot needs matplotlib ({e}); install it with `pip install matplotlib`, "
                          "or leave out --plot") from e
    return Figure, FigureCanvasAgg, ticker


def check_plot_target(args: argparse.Namespace) -> None:
    """Fails before anything is timed: ImportError without matplotlib, FileNotFoundError for a missing folder."""
    if args.plot is None:
        return
    folder = os.path.dirname(os.path.abspath(args.plot))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--plot {args.plot}: the folder {folder} does not exist")
    _import_matplotlib()


def release_memory() -> None:
    """Frees a dropped backend before the next is built (its weights, and torch's CUDA cache)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def model_label(model: str) -> str:
    """A local folder's name, or the hub id as given."""
    return os.path.basename(os.path.normpath(model)) if os.path.isdir(model) else model


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A right-aligned text table; floats with 3 significant decimals."""
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def _by_backend(points: Sequence[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    """Points grouped by backend (first-seen order), each group sorted by `key`."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        groups.setdefault(p["backend"], []).append(p)
    return {b: sorted(g, key=lambda p: p[key]) for b, g in groups.items()}


def _new_figure(ncols: int) -> tuple[Any, list[Any], Any]:
    Figure, FigureCanvasAgg, ticker = _import_matplotlib()
    fig = Figure(figsize=(6.0 * ncols, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(1, ncols))
    return fig, axes, ticker


def _log2_x(ax: Any, ticker: Any, xs: Sequence[int], label: str) -> None:
    """Log2 x axis with a tick at each swept value, labelled with the value itself."""
    values = sorted(set(xs))
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(ticker.FixedLocator(values))
    ax.xaxis.set_major_formatter(ticker.FixedFormatter([str(v) for v in values]))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    if len(values) == 1:
        ax.set_xlim(values[0] / 2, values[0] * 2)
    ax.set_xlabel(label)
    ax.set_ylim(bottom=0, auto=True)
    ax.grid(True, which="major", alpha=0.3)


def _save(fig: Any, path: str) -> None:
    fig.savefig(path, dpi=110, format="png")


def plot_throughput(points: Sequence[dict[str, Any]], path: str, *, title: str) -> None:
    """requests/s and output tokens/s against max_num_seqs, one line per backend."""
    fig, (ax_req, ax_tok), ticker = _new_figure(2)
    for backend, group in _by_backend(points, "max_num_seqs").items():
        xs = [p["max_num_seqs"] for p in group]
        ax_req.plot(xs, [p["requests_per_second"] for p in group], marker="o", label=backend)
        ax_tok.plot(xs, [p["output_tokens_per_second"] for p in group], marker="o", label=backend)
    xs = [p["max_num_seqs"] for p in points]
    xlabel = "max_num_seqs (octavo running batch; hf static batch size)"
    for ax, ylabel, name in ((ax_req, "requests/s", "Request throughput"),
                             (ax_tok, "output tokens/s", "Output token throughput")):
        _log2_x(ax, ticker, xs, xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(name)
        ax.legend(title="backend")
    fig.suptitle(title)
    _save(fig, path)


def plot_latency(points: Sequence[dict[str, Any]], path: str, *, title: str) -> None:
    """Median and p90 batch latency, and ms per output token, against batch size, per backend."""
    fig, (ax_lat, ax_tok), ticker = _new_figure(2)
    for i, (backend, group) in enumerate(_by_backend(points, "batch_size").items()):
        color = f"C{i}"
        xs = [p["batch_size"] for p in group]
        ax_lat.plot(xs, [p["percentiles"][50] for p in group], marker="o", color=color,
                    label=f"{backend} median")
        ax_lat.plot(xs, [p["percentiles"][90] for p in group], marker="^", linestyle="--", color=color,
                    label=f"{backend} p90")
        ax_tok.plot(xs, [p["ms_per_output_token"] for p in group], marker="o", color=color, label=backend)
    xs = [p["batch_size"] for p in points]
    for ax, ylabel, name in ((ax_lat, "latency of one batch (s)", "End-to-end batch latency"),
                             (ax_tok, "ms per output token (mean latency / output len)",
                              "Time per output token")):
        _log2_x(ax, ticker, xs, "batch size (requests)")
        ax.set_ylabel(ylabel)
        ax.set_title(name)
        ax.legend(title="backend")
    fig.suptitle(title)
    _save(fig, path)
