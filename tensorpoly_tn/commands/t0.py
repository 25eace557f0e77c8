"""``tensorpoly-tn t0``: few-shot adaptation and evaluation on the T0 held-out tasks."""

from __future__ import annotations

import argparse
import sys

from ..config import METHODS
from ..data import HELDOUT_TASKS
from ..models import PRESETS
from ..reporting import write_t0_outputs
from ..t0_pipeline import T0RunConfig, parse_task_list, run_t0

__all__ = ["register", "config_from_args"]


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,1,32, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "t0",
        help="adapt on the T0 held-out tasks few-shot and evaluate by rank classification",
        description="Few-shot adaptation on the T0 held-out tasks, evaluated by rank classification. "
        "Writes results.json, results.md, config.json and router.png into --out.",
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--preset", choices=sorted(PRESETS), help="a model built from a config, no download (default: tiny)")
    model.add_argument("--model", metavar="NAME_OR_PATH", help="a T5 checkpoint, e.g. google/t5-large-lm-adapt")

    parser.add_argument("--method", default="tensorpoly-1", choices=METHODS, help="adapter method (default: %(default)s)")
    parser.add_argument("--tasks", default="all", help=f"comma-separated tasks or 'all' (known: {', '.join(HELDOUT_TASKS)})")
    parser.add_argument("--out", required=True, help="output directory")

    parser.add_argument("--data-dir", help="folder with t0/few_shot (default: $TENSORPOLY_DATA, else ../shared/data)")
    parser.add_argument("--templates", dest="templates_dir", metavar="DIR",
                        help="promptsource templates root (default: <data-dir>/promptsource when present)")
    parser.add_argument("--builtin-templates", action="store_true", help="use the package's own templates")
    parser.add_argument("--hf-validation", action="store_true",
                        help="evaluate on the original validation split loaded from the hub")

    parser.add_argument("--seeds", type=_int_list, help="few-shot seeds to adapt on, e.g. 0,1,32 (default: the first --n-seeds)")
    parser.add_argument("--n-seeds", type=int, default=3, help="number of seeds when --seeds is not given (default: %(default)s)")
    parser.add_argument("--max-templates", type=int, default=3, help="templates per task, 0 for all (default: %(default)s)")
    parser.add_argument("--max-eval-examples", type=int, default=64,
                        help="evaluation examples per task and seed, 0 for all (default: %(default)s)")

    parser.add_argument("--steps", type=int, default=30, help="training steps per task and seed (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8, help="training batch size (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=3e-3, help="learning rate (default: %(default)s)")

    parser.add_argument("--rank", type=int, default=4, help="adapter rank (default: %(default)s)")
    parser.add_argument("--n-terms", type=int, default=4, help="tensor-product terms K (default: %(default)s)")
    parser.add_argument("--order", type=int, default=2, help="leaves per term N (default: %(default)s)")
    parser.add_argument("--normalize", default="pairwise", choices=("pairwise", "none"),
                        help="layer norm on products of neighbouring leaves, or none (default: %(default)s)")

    parser.add_argument("--summed-scores", action="store_true",
                        help="rank by summed log-likelihood instead of the length-normalised mean")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model and adapter initialisation")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run_command)


def config_from_args(args: argparse.Namespace) -> T0RunConfig:
    return T0RunConfig(
        tasks=parse_task_list(args.tasks),
        method=args.method,
        preset=None if args.model else (args.preset or "tiny"),
        model=args.model,
        data_dir=args.data_dir,
        templates_dir=args.templates_dir,
        builtin_templates=args.builtin_templates,
        hf_validation=args.hf_validation,
        seeds=args.seeds,
        n_seeds=args.n_seeds,
        max_templates=args.max_templates or None,
        max_eval_examples=args.max_eval_examples or None,
        length_normalize=not args.summed_scores,
        adapter={"rank": args.rank, "n_terms": args.n_terms, "order": args.order, "normalize": args.normalize},
        training={"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr},
        seed=args.seed,
    )


def run_command(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    results = run_t0(config, progress=not args.no_progress)
    results["command"] = ["tensorpoly-tn", *sys.argv[1:]]
    for path in write_t0_outputs(args.out, results):
        print(f"wrote {path}")
    print()
    print(open(f"{args.out}/results.md", encoding="utf-8").read())
    return 0
