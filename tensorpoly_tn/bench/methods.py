"""Training step per method against PEFT LoRA and PEFT Poly, and merged inference against the bare model.

Every model starts from the same small random T5 (no download). Steps of all models are timed in
turn, round after round, so that load from other processes falls on every model alike. Each
ratio is a ratio of medians from one run. PEFT (a dev dependency) is needed for the PEFT rows.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch

from .allocator import keep_freed_memory

__all__ = ["add_arguments", "run"]

TARGETS = (r".*\.(SelfAttention|EncDecAttention)\.(q|k|v|o)", r".*\.DenseReluDense\.(wi_0|wi_1|wo)")
PEFT_TARGETS = r".*\.((SelfAttention|EncDecAttention)\.(q|k|v|o)|DenseReluDense\.(wi_0|wi_1|wo))"
TRAINING_TARGET = 1.15  # tensorpoly-1 and tensorpoly-2 against PEFT LoRA
MERGED_TARGET = 1.02  # merged model against the bare model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--d-model", type=int, default=256, help="T5 width d_model")
    parser.add_argument("--d-ff", type=int, default=512, help="T5 feed-forward width d_ff")
    parser.add_argument("--layers", type=int, default=2, help="encoder and decoder blocks each")
    parser.add_argument("--batch", type=int, default=8, help="rows per batch")
    parser.add_argument("--source-length", type=int, default=64, help="input tokens per row")
    parser.add_argument("--target-length", type=int, default=16, help="label tokens per row")
    parser.add_argument("--rank", type=int, default=4, help="LoRA rank of every method")
    parser.add_argument("--n-tasks", type=int, default=8, help="tasks; the batch mixes them")
    parser.add_argument("--n-skills", type=int, default=8, help="skills of poly and mhr, and n_terms of the TLoRA methods")
    parser.add_argument("--order", type=int, default=2, help="TLoRA order N")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds (the median is reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's allocator as it is; by default it keeps freed memory so that page faults do not skew the ratios")


def _base_model(args: argparse.Namespace) -> torch.nn.Module:
    import transformers

    config = transformers.T5Config(
        vocab_size=384, d_model=args.d_model, d_kv=args.d_model // 4, d_ff=args.d_ff, num_heads=4,
        num_layers=args.layers, num_decoder_layers=args.layers, feed_forward_proj="gated-gelu",
        dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )
    torch.manual_seed(0)
    return transformers.T5ForConditionalGeneration(config)


def _our_step(model: torch.nn.Module, batch: dict, task_ids: torch.Tensor) -> Callable[[], None]:
    from .. import use_tasks

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with use_tasks(model, task_ids):
            model(**batch).loss.backward()

    return step


def _training_steps(args: argparse.Namespace, batch: dict, task_ids: torch.Tensor) -> dict[str, Callable[[], None]]:
    from .. import METHODS, TensorPolyConfig, apply_adapters

    base = _base_model(args)
    steps: dict[str, Callable[[], None]] = {}
    for method in METHODS:
        model = copy.deepcopy(base).train()
        config = TensorPolyConfig(
            method=method, rank=args.rank, n_tasks=args.n_tasks, n_terms=args.n_skills, n_skills=args.n_skills,
            order=args.order, n_splits=4 if method == "mhr" else 1, target_modules=TARGETS,
        )
        apply_adapters(model, config)
        steps[method] = _our_step(model, batch, task_ids)
    try:
        import peft
    except ImportError:
        return steps
    lora = peft.get_peft_model(
        copy.deepcopy(base), peft.LoraConfig(r=args.rank, lora_alpha=1, target_modules=PEFT_TARGETS, lora_dropout=0.0)
    ).train()
    poly_config = peft.PolyConfig(
        task_type="SEQ_2_SEQ_LM", r=args.rank, n_tasks=args.n_tasks, n_skills=args.n_skills, target_modules=PEFT_TARGETS
    )
    poly = peft.get_peft_model(copy.deepcopy(base), poly_config).train()

    def lora_step() -> None:
        lora.zero_grad(set_to_none=True)
        lora(**batch).loss.backward()

    def poly_step() -> None:
        poly.zero_grad(set_to_none=True)
        poly(**batch, task_ids=task_ids).loss.backward()

    steps["peft-lora"] = lora_step
    steps["peft-poly"] = poly_step
    return steps


def _median_times(steps: dict[str, Callable[[], None]], repeats: int, warmup: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_index in range(warmup + repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _inference_steps(args: argparse.Namespace, batch: dict, task_ids: torch.Tensor) -> dict[str, Callable[[], None]]:
    from .. import TensorPolyConfig, apply_adapters, merge_into_base

    bare = _base_model(args).eval()
    merged = copy.deepcopy(bare)
    apply_adapters(merged, TensorPolyConfig(method="tensorpoly-1", rank=args.rank, n_tasks=args.n_tasks,
                                            n_terms=args.n_skills, order=args.order, target_modules=TARGETS))
    merge_into_base(merged, int(task_ids[0]))

    def forward(model: torch.nn.Module) -> Callable[[], None]:
        def step() -> None:
            with torch.no_grad():
                model(**batch)

        return step

    return {"bare": forward(bare), "merged": forward(merged)}


def run(args: argparse.Namespace) -> int:
    if not args.default_malloc:
        applied = keep_freed_memory()
        print(f"allocator: glibc keeps freed memory (see tensorpoly_tn.bench.allocator): {'yes' if applied else 'not available'}")
    generator = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(3, 384, (args.batch, args.source_length), generator=generator),
        "labels": torch.randint(3, 384, (args.batch, args.target_length), generator=generator),
    }
    task_ids = torch.randint(0, args.n_tasks, (args.batch,), generator=generator)

    print(
        f"small T5: d_model {args.d_model}, d_ff {args.d_ff}, {args.layers}+{args.layers} blocks; batch {args.batch} x "
        f"{args.source_length} -> {args.target_length} tokens; rank {args.rank}, {args.n_tasks} tasks, "
        f"{args.n_skills} skills/terms, order {args.order}; {torch.get_num_threads()} torch threads; "
        f"median of {args.repeats} rounds"
    )
    training = _median_times(_training_steps(args, batch, task_ids), args.repeats, args.warmup)
    lora, poly = training.get("peft-lora"), training.get("peft-poly")
    print(f"\ntraining step (forward + backward)\n{'method':<14}{'ms':>9}{'/ PEFT LoRA':>13}{'/ PEFT Poly':>13}")
    for name, seconds in training.items():
        versus_lora = f"{seconds / lora:.3f}" if lora else "-"
        versus_poly = f"{seconds / poly:.3f}" if poly else "-"
        print(f"{name:<14}{1000 * seconds:>9.2f}{versus_lora:>13}{versus_poly:>13}")

    inference = _median_times(_inference_steps(args, batch, task_ids), args.repeats, args.warmup)
    merged_ratio = inference["merged"] / inference["bare"]
    print(
        f"\ninference (no grad): bare {1000 * inference['bare']:.2f} ms, tensorpoly-1 after merge_into_base "
        f"{1000 * inference['merged']:.2f} ms, ratio {merged_ratio:.3f}"
    )

    if lora and poly:
        print("\ntargets")
        for method in ("tensorpoly-1", "tensorpoly-2"):
            met = training[method] <= TRAINING_TARGET * lora and training[method] <= poly
            print(
                f"  {method}: {training[method] / lora:.3f}x PEFT LoRA (target <= {TRAINING_TARGET}), "
                f"{training[method] / poly:.3f}x PEFT Poly (target <= 1): {'met' if met else 'NOT met'}"
            )
    print(f"  merged inference: {merged_ratio:.3f}x bare (target <= {MERGED_TARGET}): "
          f"{'met' if merged_ratio <= MERGED_TARGET else 'NOT met'}")
    return 0
