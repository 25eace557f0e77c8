"""``tensorpoly-tn params``: trainable parameters per method, counted and in closed form."""

from __future__ import annotations

import argparse
import logging

from ..config import METHODS, TensorPolyConfig
from ..model_configs import MODEL_CONFIGS

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = TensorPolyConfig()
    parser = subparsers.add_parser(
        "params",
        help="print trainable parameters per method on a T5 built on the meta device (no download)",
    )
    parser.add_argument(
        "--model-config", default="t5-large-lm-adapt", choices=sorted(MODEL_CONFIGS), help="T5 architecture to count on"
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, metavar="METHOD",
                        help=f"methods to count (default: all of {', '.join(METHODS)})")
    parser.add_argument("--rank", type=int, default=defaults.rank, help="LoRA rank r")
    parser.add_argument("--n-tasks", type=int, default=defaults.n_tasks, help="router rows (tasks)")
    parser.add_argument("--n-terms", type=int, default=defaults.n_terms, help="K, terms per TLoRA factor")
    parser.add_argument("--order", type=int, default=defaults.order, help="N, leaves per term")
    parser.add_argument("--n-skills", type=int, default=defaults.n_skills, help="LoRA skills per layer (poly, mhr)")
    parser.add_argument("--n-splits", type=int, default=4, help="routed heads per skill, used by mhr only")
    parser.add_argument("--router-only", action="store_true", help="count the '-z' mode: routers only")
    parser.add_argument("--per-layer", action="store_true", help="also print every adapted layer's count")
    parser.set_defaults(func=run)


def _config(method: str, args: argparse.Namespace) -> TensorPolyConfig:
    routed = method in ("poly", "mhr", "tensorpoly-1", "tensorpoly-2")
    return TensorPolyConfig(
        method=method,
        rank=args.rank,
        n_tasks=args.n_tasks,
        n_terms=args.n_terms,
        order=args.order,
        n_skills=args.n_skills,
        n_splits=args.n_splits if method == "mhr" else 1,
        router_only=args.router_only and routed,
    )


def run(args: argparse.Namespace) -> int:
    from ..accounting import count_methods

    configs = [_config(method, args) for method in args.methods]
    results = count_methods(args.model_config, configs)
    print(
        f"{args.model_config}: rank {args.rank}, {args.n_tasks} tasks, {args.n_terms} terms, order {args.order}, "
        f"{args.n_skills} skills, {args.n_splits} splits (mhr){', router only' if args.router_only else ''}"
    )
    print(f"{'method':<14}{'trainable':>14}{'closed form':>14}{'match':>7}{'% of base':>11}")
    for result in results:
        match = "yes" if result.counted == result.closed_form else "NO"
        print(
            f"{result.method:<14}{result.counted:>14,}{result.closed_form:>14,}{match:>7}{100 * result.share:>10.4f}%"
        )
    if args.per_layer:
        for result in results:
            print(f"\n{result.method}: per layer (d_in x d_out: trainable)")
            for name, count in result.per_layer.items():
                d_in, d_out = result.shapes[name]
                print(f"  {name:<48} {d_in:>5} x {d_out:<5} {count:>10,}")
    mismatched = [result.method for result in results if result.counted != result.closed_form]
    if mismatched:
        logger.error("counted and closed-form parameters differ for %s", mismatched)
        return 1
    return 0
