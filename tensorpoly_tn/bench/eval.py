"""Rank classification: encoding each input once against re-encoding it per answer choice.

For each of the 11 T0 held-out tasks, the real few-shot examples (every seed file, each example
once) are rendered with the task's first template and scored both ways by
:func:`tensorpoly_tn.evaluation.score_choices`. The two paths alternate round after round so
that load from other processes falls on both alike; the ratio is of the median times. The
predictions of both paths must be identical, and the scores equal up to ``--tolerance``.
"""

from __future__ import annotations

import argparse
import statistics
import time

__all__ = ["add_arguments", "run", "SPEEDUP_TARGET"]

SPEEDUP_TARGET = 1.8  # on 2-choice tasks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, help="data folder with t0/few_shot (default: resolved as by `t0`)")
    parser.add_argument("--templates-dir", default=None,
                        help="promptsource templates root (default: the package's builtin templates)")
    parser.add_argument("--model", default=None, help="Hugging Face model name or local path (default: --preset)")
    parser.add_argument("--preset", default="tiny", help="model preset used when --model is not given")
    parser.add_argument("--tasks", nargs="+", default=None, help="held-out tasks (default: all 11)")
    parser.add_argument("--max-examples", type=int, default=64, help="examples per task, at most")
    parser.add_argument("--batch-size", type=int, default=16, help="examples per encoder batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per path (the median is reported)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted score difference")


def _task_examples(task: str, args: argparse.Namespace) -> list:
    from ..data.t0 import few_shot_seeds, load_few_shot
    from ..data.templates import render_examples, templates_for_task

    raw, seen = [], set()
    for seed in few_shot_seeds(task, args.data_dir):
        for example in load_few_shot(task, args.data_dir, seed):
            key = repr(sorted(example.items()))
            if key not in seen:
                seen.add(key)
                raw.append(example)
    template = templates_for_task(task, args.templates_dir)[0]
    return render_examples(task, raw[: args.max_examples], [template])[template.name]


def _time_paths(model, tokenizer, examples, args) -> tuple[float, float, list, list]:
    from ..evaluation import score_choices

    times: dict[bool, list[float]] = {False: [], True: []}
    scores: dict[bool, list] = {}
    for _ in range(args.repeats):
        for reencode in (False, True):
            start = time.perf_counter()
            scores[reencode] = score_choices(
                model, tokenizer, examples, batch_size=args.batch_size, reencode=reencode
            )
            times[reencode].append(time.perf_counter() - start)
    return statistics.median(times[False]), statistics.median(times[True]), scores[False], scores[True]


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data.t0 import HELDOUT_TASKS
    from ..models import load_model_and_tokenizer

    if args.max_examples < 1 or args.repeats < 1:
        raise ValueError(f"--max-examples and --repeats must be at least 1, got {args.max_examples} and {args.repeats}")
    tasks = args.tasks or list(HELDOUT_TASKS)
    unknown = [t for t in tasks if t not in HELDOUT_TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known held-out tasks are {list(HELDOUT_TASKS)}")
    model, tokenizer = load_model_and_tokenizer(args.model, None if args.model else args.preset)
    torch.manual_seed(0)

    print("| task | examples | choices | re-encode s | encode once s | speed-up | same predictions | max score diff |")
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    two_choice: list[tuple[float, float]] = []
    all_identical = True
    for task in tasks:
        examples = _task_examples(task, args)
        once, again, scores_once, scores_again = _time_paths(model, tokenizer, examples, args)
        predictions = [[max(range(len(r)), key=r.__getitem__) for r in s] for s in (scores_once, scores_again)]
        same = predictions[0] == predictions[1]
        difference = max(abs(a - b) for row_a, row_b in zip(scores_once, scores_again) for a, b in zip(row_a, row_b))
        all_identical &= same and difference <= args.tolerance
        choices = sorted({len(e.choices) for e in examples})
        if choices == [2]:
            two_choice.append((once, again))
        print(
            f"| {task} | {len(examples)} | {'/'.join(map(str, choices))} | {again:.3f} | {once:.3f} | "
            f"{again / once:.2f}x | {'yes' if same else 'NO'} | {difference:.1e} |"
        )
    if two_choice:
        ratio = sum(a for _, a in two_choice) / sum(o for o, _ in two_choice)
        verdict = "meets" if ratio >= SPEEDUP_TARGET else "misses"
        print(f"\n2-choice tasks: total speed-up {ratio:.2f}x ({verdict} the {SPEEDUP_TARGET}x target)")
    print(f"results identical on every task: {'yes' if all_identical else 'NO'}")
    return 0 if all_identical else 1
