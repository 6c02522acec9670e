"""The `octavo` command: `octavo demo [--model DIR]` (the default), `octavo bench ...`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # everything after `bench` is the benchmark's own command line
        from octavo.bench.__main__ import main as bench_main

        bench_main(argv[1:], prog="octavo bench")
        return
    parser = argparse.ArgumentParser(prog="octavo", description="octavo: offline LLM inference")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="generate a few completions with a built-in default model")
    demo.add_argument("--model", default=None, help="an HF model folder or hub id (default: built-in)")
    demo.add_argument("--max-tokens", type=int, default=48)
    sub.add_parser("bench", add_help=False,
                   help="benchmarks with vLLM's options: `octavo bench throughput|latency --help`")
    args = parser.parse_args(argv)
    from octavo.demo import run_demo

    run_demo(getattr(args, "model", None), getattr(args, "max_tokens", 48))


if __name__ == "__main__":
    main()
