"""``tensorpoly-tn train``: the multitask stage, in one process or under ``accelerate launch``.

The same command runs data-parallel on several GPUs or machines with
``accelerate launch --multi_gpu --num_processes N -m tensorpoly_tn.cli train ...``, and on several
CPU processes with ``torchrun --nproc_per_node N -m tensorpoly_tn.cli train ...``: the
``Accelerator`` reads the process group from the environment either launcher sets. Note that
``accelerate launch --cpu`` starts one process whatever ``--num_processes`` is set to (accelerate
1.16), unless an accelerate config with ``distributed_type: MULTI_CPU`` and mpirun is used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register", "run", "load_run_config"]

DATA_SOURCES = ("skills", "p3")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="multitask stage (adapters and routers) with resumable checkpoints; works under accelerate launch"
    )
    parser.add_argument("--config", type=Path, default=None,
                        help="run config JSON (see configs/): model, preset, data, adapter, training")
    parser.add_argument("--out", type=Path, required=True, help="folder for checkpoint.pt and results.json")
    parser.add_argument("--method", default=None, help="adapter method (overrides the config)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (overrides the config)")
    parser.add_argument("--batch-size", type=int, default=None, help="global examples per step (overrides the config)")
    parser.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints; 0: only at the end")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def load_run_config(path: Path | None) -> dict:
    """Read a run config, filling in the offline defaults (tiny preset, embedded skills data)."""
    config = {"model": None, "preset": "tiny", "data": {"source": "skills"}, "adapter": {}, "training": {}}
    if path is not None:
        values = json.loads(Path(path).read_text())
        unknown = sorted(set(values) - set(config) - {"description", "paper"})
        if unknown:
            raise ValueError(f"unknown run config keys {unknown} in {path}; known keys are {sorted(config)}")
        config.update(values)
    if config["data"].get("source") not in DATA_SOURCES:
        raise ValueError(f"data.source must be one of {DATA_SOURCES}, got {config['data'].get('source')!r}")
    return config


def _examples(data: dict):
    if data["source"] == "p3":
        from ..p3 import build_p3_mixture

        return build_p3_mixture(**{k: v for k, v in data.items() if k != "source"})
    from ..skills import SkillsBenchmark, SkillsBenchmarkConfig

    bench = SkillsBenchmark(SkillsBenchmarkConfig.from_dict(data.get("benchmark", {})))
    per_task = data.get("examples_per_task", 100)
    examples = [e for t in bench.train_tasks for e in bench.examples(t, per_task)]
    return examples, bench.n_tasks


def run(args: argparse.Namespace) -> int:
    import torch
    from accelerate import Accelerator

    from ..config import TensorPolyConfig
    from ..experiments.multitask import replica_difference, train_multitask
    from ..inject import apply_adapters
    from ..models import load_model_and_tokenizer
    from ..reporting import atomic_write_json
    from ..training import TrainingConfig

    config = load_run_config(args.config)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    examples, n_tasks = _examples(config["data"])
    model, tokenizer = load_model_and_tokenizer(config["model"], None if config["model"] else config["preset"])
    adapter = dict(config["adapter"], n_tasks=n_tasks)
    if args.method:
        adapter["method"] = args.method
    adapter_config = TensorPolyConfig.from_dict(adapter)
    training = dict(config["training"])
    training.update({k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size)) if v is not None})
    training_config = TrainingConfig(**training)

    torch.manual_seed(training_config.seed)  # same adapter initialisation on every process
    report = apply_adapters(model, adapter_config)
    model.to(accelerator.device)
    losses = train_multitask(model, tokenizer, examples, training_config, args.out, args.checkpoint_every,
                             accelerator, progress=not args.no_progress)
    difference = replica_difference(model, accelerator)
    if accelerator.is_main_process:
        atomic_write_json(args.out / "results.json", {
            "kind": "multitask",
            "num_processes": accelerator.num_processes,
            "replica_max_abs_difference": difference,
            "trainable_parameters": report.trainable_parameters,
            "adapter": adapter_config.to_dict(),
            "training": training_config.__dict__,
            "losses": losses,
        })
        print(f"{len(losses)} steps on {accelerator.num_processes} process(es), final loss {losses[-1]:.4f}; "
              f"replicas differ by at most {difference:.2e}; wrote {args.out / 'results.json'}")
    accelerator.end_training() if hasattr(accelerator, "end_training") else None
    return 0
