"""The `octavo` command: `octavo demo [--model DIR]` (the default)."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="octavo", description="octavo: offline LLM inference")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="generate a few completions with a built-in default model")
    demo.add_argument("--model", default=None, help="an HF model folder or hub id (default: built-in)")
    demo.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args(argv)
    from octavo.demo import run_demo

    run_demo(getattr(args, "model", None), getattr(args, "max_tokens", 48))


if __name__ == "__main__":
    main()
