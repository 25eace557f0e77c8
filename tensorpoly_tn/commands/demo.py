"""``tensorpoly-tn demo``: the TensorPoly protocol (Su et al., 2024, arXiv 2405.16671) on the embedded benchmark."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

__all__ = ["register", "run", "QUICK_OVERRIDES"]

# Settings of --quick: a smoke run of a few seconds per method, far too short to compare methods.
QUICK_OVERRIDES = {
    "train_examples_per_task": 8,
    "multitask_steps": 4,
    "multitask_batch_size": 4,
    "few_shot_steps": 2,
    "few_shot_batch_size": 2,
    "k_shot": 2,
    "n_test_examples": 4,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="multitask stage, few-shot adaptation and router analysis on the embedded skills benchmark",
        description=(
            "Pretrain (or load from the cache) a tiny T5, train each method's adapters and routers on "
            "the benchmark's training tasks, adapt them to every held-out task from k examples over "
            "several seeds, and print held-out accuracy, trainable parameters and skill recovery."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for results.json and plots")
    parser.add_argument("--config", type=Path, default=None, help="ProtocolConfig JSON file; flags below override it")
    parser.add_argument("--methods", nargs="+", default=None, help="methods to compare (default: all six)")
    parser.add_argument("--seeds", type=int, default=None, help="number of few-shot seeds (0, 1, ...)")
    parser.add_argument("--k-shot", type=int, default=None, help="training examples per held-out task")
    parser.add_argument("--multitask-steps", type=int, default=None, help="optimizer steps of the multitask stage")
    parser.add_argument("--backbone-steps", type=int, default=None, help="optimizer steps of backbone pretraining")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="backbone cache folder (default: $TENSORPOLY_CACHE or ~/.cache/tensorpoly_tn)")
    parser.add_argument("--quick", action="store_true", help="smoke run with tiny step counts (not for comparison)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    """Build the ProtocolConfig from ``--config`` and the flags that override it."""
    from ..experiments import ProtocolConfig

    config = ProtocolConfig.from_json(args.config.read_text()) if args.config else ProtocolConfig()
    overrides = dict(QUICK_OVERRIDES) if args.quick else {}
    if args.methods:
        overrides["methods"] = tuple(args.methods)
    if args.seeds is not None:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be at least 1, got {args.seeds}")
        overrides["few_shot_seeds"] = tuple(range(args.seeds))
    if args.k_shot is not None:
        overrides["k_shot"] = args.k_shot
    if args.multitask_steps is not None:
        overrides["multitask_steps"] = args.multitask_steps
    backbone = config.backbone
    if args.backbone_steps is not None:
        backbone = dataclasses.replace(backbone, steps=args.backbone_steps)
    elif args.quick:
        backbone = dataclasses.replace(backbone, steps=5)
    return dataclasses.replace(config, backbone=backbone, **overrides)


def run(args: argparse.Namespace) -> int:
    from ..experiments import results_table, run_protocol, write_results

    config = build_config(args)
    start = time.perf_counter()
    results = run_protocol(config, cache_dir=args.cache_dir, progress=not args.no_progress)
    written = write_results(args.out, results, plots=not args.no_plots)
    print(results_table(results))
    backbone = results["backbone"]
    print(
        f"\nbackbone: {'read from cache' if backbone['cached'] else 'pretrained'} in {backbone['seconds']:.1f} s "
        f"({backbone['path']}); total {time.perf_counter() - start:.1f} s"
    )
    print("wrote " + ", ".join(str(p) for p in written))
    if args.quick:
        print("note: --quick uses tiny step counts; its scores say nothing about the methods")
    return 0
