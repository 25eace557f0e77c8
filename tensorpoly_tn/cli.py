"""The ``tensorpoly-tn`` command line: one subcommand per module in :mod:`tensorpoly_tn.commands`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

# Subcommand name -> module with ``register(subparsers)``; modules are imported when the parser is built.
COMMAND_MODULES: dict[str, str] = {
    "t0": "tensorpoly_tn.commands.t0",
    "bench": "tensorpoly_tn.commands.bench",
    "params": "tensorpoly_tn.commands.params",
    "demo": "tensorpoly_tn.commands.demo",
    "train": "tensorpoly_tn.commands.train",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tensorpoly-tn",
        description="TensorPoly adapters as tensor networks: experiments, benchmarks and tools.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES.values():
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        # Expected user-facing failures (bad option, missing data, unreachable model) print one
        # line; --verbose shows the traceback.
        if args.verbose:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
