"""`octavo bench throughput|latency ...`, also `python -m octavo.bench throughput|latency ...`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from octavo.bench import latency, throughput


def build_parser(prog: str = "octavo bench") -> argparse.ArgumentParser:
    """The bench command line: one subcommand per benchmark."""
    parser = argparse.ArgumentParser(prog=prog, description="octavo benchmarks, with vLLM's options")
    sub = parser.add_subparsers(dest="benchmark", required=True)
    for name, module, runner, help_text in (
        ("throughput", throughput, throughput.run_throughput, "offline throughput over many requests"),
        ("latency", latency, latency.run_latency, "end-to-end latency of one batch"),
    ):
        p = sub.add_parser(name, help=help_text, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_cli_args(p)
        p.set_defaults(func=runner)
    return parser


def main(argv: list[str] | None = None, prog: str = "octavo bench") -> dict[str, Any]:
    """Parses argv (default sys.argv[1:]), runs the benchmark and returns its result dict.

    Bad options exit through argparse (SystemExit 2); a refused engine option, a missing
    model or dataset, or a missing torch for --backend hf exits with SystemExit carrying
    a one-line message.
    """
    args = build_parser(prog).parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, ImportError) as e:
        raise SystemExit(f"{prog} {args.benchmark}: error: {type(e).__name__}: {e}") from e


if __name__ == "__main__":
    main()
