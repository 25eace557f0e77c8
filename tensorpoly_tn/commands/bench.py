"""``tensorpoly-tn bench NAME``: benchmarks that print ratios measured side by side in one run."""

from __future__ import annotations

import argparse
import importlib

__all__ = ["register", "BENCHMARK_MODULES"]

# Benchmark name -> module with ``add_arguments(parser)`` and ``run(args) -> int``.
BENCHMARK_MODULES: dict[str, str] = {
    "methods": "tensorpoly_tn.bench.methods",
    "planner": "tensorpoly_tn.bench.planner",
    "eval": "tensorpoly_tn.bench.eval",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="run a benchmark and print measured ratios")
    names = parser.add_subparsers(dest="benchmark", metavar="NAME", required=True)
    for name, module_name in BENCHMARK_MODULES.items():
        module = importlib.import_module(module_name)
        sub = names.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(sub)
        sub.set_defaults(func=module.run)
