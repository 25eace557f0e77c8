"""Few-shot adaptation and rank-classification evaluation on the T0 held-out tasks.

For each task the model gets a fresh router row (its task id), the adapters and routers are reset
to their initial values, trained on the few-shot examples of one seed, and evaluated with every
template by rank classification. Offline, evaluation uses the examples of the other seeds' files
that are not in the training file; with ``hf_validation`` it uses the original validation split.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import METHODS, TensorPolyConfig
from .data import (
    HELDOUT_TASKS,
    PromptedExample,
    few_shot_seeds,
    get_task,
    load_hub_validation,
    offline_split,
    render_examples,
    resolve_data_dir,
    sample_few_shot_from_hub,
    templates_for_task,
)
from .data.hub import HubUnavailableError
from .data.t0 import DataNotFoundError
from .evaluation import accuracy, rank_classify
from .inject import adapter_layers, apply_adapters
from .models import load_model_and_tokenizer
from .training import TrainingConfig, train_adapters

__all__ = ["T0RunConfig", "TaskData", "run_t0", "parse_task_list", "summarise"]

logger = logging.getLogger(__name__)


def parse_task_list(text: str | None) -> list[str]:
    """Turn ``"copa,rte"`` (or ``None`` / ``"all"``) into a checked list of held-out task names."""
    if text is None or text.strip() in ("", "all"):
        return list(HELDOUT_TASKS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        get_task(name)  # raises with the list of known tasks
    return names


@dataclass
class T0RunConfig:
    """Everything that defines one run of the T0 held-out pipeline; saved as ``config.json``."""

    tasks: list[str] = field(default_factory=lambda: list(HELDOUT_TASKS))
    method: str = "tensorpoly-1"
    preset: str | None = "tiny"
    model: str | None = None
    data_dir: str | None = None
    templates_dir: str | None = None
    builtin_templates: bool = False
    hf_validation: bool = False
    seeds: list[int] | None = None
    n_seeds: int = 3
    max_templates: int | None = 3
    max_eval_examples: int | None = 64
    length_normalize: bool = True
    adapter: dict[str, Any] = field(default_factory=lambda: {"rank": 4, "n_terms": 4, "order": 2, "normalize": "pairwise"})
    training: dict[str, Any] = field(default_factory=lambda: {"steps": 30, "batch_size": 8, "lr": 3e-3})
    eval_batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if (self.preset is None) == (self.model is None):
            raise ValueError("give exactly one of preset (e.g. 'tiny') and model (a name or path)")
        self.tasks = parse_task_list(",".join(self.tasks))
        if self.n_seeds < 1:
            raise ValueError(f"n_seeds must be >= 1, got {self.n_seeds}")
        for name in ("max_templates", "max_eval_examples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None (no limit), got {value}")
        # Build both configs once so that bad values fail before any work starts.
        self.adapter_config(n_tasks=1)
        self.training_config(seed=0)

    def adapter_config(self, n_tasks: int) -> TensorPolyConfig:
        return TensorPolyConfig(method=self.method, n_tasks=n_tasks, **self.adapter)

    def training_config(self, seed: int) -> TrainingConfig:
        return TrainingConfig(seed=seed, **self.training)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TaskData:
    """One task's training examples and evaluation examples per template, for one seed."""

    train: list[PromptedExample]
    evaluation: dict[str, list[PromptedExample]]


def _seeds_for(task: str, config: T0RunConfig, data_dir: Path | None) -> list[int]:
    if config.seeds is not None:
        return list(config.seeds)
    if data_dir is None:
        return list(range(config.n_seeds))
    return few_shot_seeds(task, data_dir)[: config.n_seeds]


def _raw_split(task: str, seed: int, config: T0RunConfig, data_dir: Path | None) -> tuple[list[dict], list[dict]]:
    """Return the raw training and evaluation examples of ``task`` for one seed."""
    if data_dir is not None:
        train, evaluation = offline_split(task, data_dir, seed)
        if config.hf_validation:
            evaluation = load_hub_validation(task)
        return train, evaluation
    return sample_few_shot_from_hub(task, seed), load_hub_validation(task)


def _templates_dir(config: T0RunConfig, data_dir: Path | None) -> Path | None:
    """Return the promptsource root: the given one, else ``<data_dir>/promptsource``, else None (builtin)."""
    if config.builtin_templates:
        return None
    if config.templates_dir is not None:
        return Path(config.templates_dir)
    if data_dir is not None and (data_dir / "promptsource").is_dir():
        return data_dir / "promptsource"
    return None


def prepare_task(task: str, task_id: int, seed: int, config: T0RunConfig, data_dir: Path | None) -> TaskData:
    """Render the few-shot training set and the per-template evaluation sets of one task and seed."""
    templates = templates_for_task(task, _templates_dir(config, data_dir))
    if config.max_templates is not None:
        templates = templates[: config.max_templates]
    train_raw, eval_raw = _raw_split(task, seed, config, data_dir)
    if config.max_eval_examples is not None:
        eval_raw = eval_raw[: config.max_eval_examples]
    train_by_template = render_examples(task, train_raw, templates, task_id)
    evaluation = render_examples(task, eval_raw, templates, task_id)
    train = [example for examples in train_by_template.values() for example in examples]
    return TaskData(train=train, evaluation={name: examples for name, examples in evaluation.items() if examples})


def _adapter_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def _restore(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            parameters[name].copy_(value)


def _task_allocation(model: torch.nn.Module, task_id: int) -> np.ndarray | None:
    """Mean over adapted layers of one task's routing weights, shape (expert,); None without routers."""
    rows = []
    for layer in adapter_layers(model).values():
        router = getattr(layer, "router", None)
        if router is not None:
            with torch.no_grad():
                rows.append(router.allocation()[task_id].float().cpu().numpy())
    if not rows:
        return None
    return np.mean(np.stack(rows), axis=0)


def summarise(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task: median accuracy over templates for each seed, then mean and spread over seeds."""
    summary: dict[str, dict[str, Any]] = {}
    for task in dict.fromkeys(record["task"] for record in records):
        per_seed = {}
        for seed in dict.fromkeys(r["seed"] for r in records if r["task"] == task):
            accuracies = [r["accuracy"] for r in records if r["task"] == task and r["seed"] == seed]
            per_seed[seed] = statistics.median(accuracies)
        values = list(per_seed.values())
        summary[task] = {
            "median_over_templates_by_seed": per_seed,
            "mean": statistics.fmean(values),
            "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "n_seeds": len(values),
            "n_templates": len({r["template"] for r in records if r["task"] == task}),
        }
    return summary


def run_t0(config: T0RunConfig, progress: bool = True, on_task_done: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Adapt and evaluate on every task of ``config``; return the results as a JSON-ready dict.

    ``on_task_done`` is called with the partial results after each task, so a caller can report
    progress; nothing is written here.
    """
    started = time.perf_counter()
    try:
        data_dir = resolve_data_dir(config.data_dir)
        data_error = None
    except DataNotFoundError as error:
        if config.data_dir is not None:
            raise
        logger.warning("no few-shot data directory found; drawing the k-shot sets from the hub")
        data_dir, data_error = None, error
    if data_dir is not None:
        templates = _templates_dir(config, data_dir)
        logger.info("reading the few-shot splits from %s and the templates from %s", data_dir,
                    templates if templates is not None else "the builtin set")
    if data_dir is None:
        # Fail before loading the model when neither the files nor the hub can be read.
        try:
            _raw_split(config.tasks[0], _seeds_for(config.tasks[0], config, None)[0], config, None)
        except HubUnavailableError as error:
            raise DataNotFoundError(f"{data_error} The hub fallback failed too: {error}") from error

    model, tokenizer = load_model_and_tokenizer(config.model, preset=config.preset, seed=config.seed)
    torch.manual_seed(config.seed)
    report = apply_adapters(model, config.adapter_config(n_tasks=len(config.tasks)))
    initial = _adapter_state(model)

    records: list[dict[str, Any]] = []
    allocations: dict[str, list[float]] = {}
    units = [(task_id, task, seed) for task_id, task in enumerate(config.tasks) for seed in _seeds_for(task, config, data_dir)]
    bar = tqdm(units, desc="t0", disable=not progress)
    for task_id, task, seed in bar:
        bar.set_postfix(task=task, seed=seed)
        data = prepare_task(task, task_id, seed, config, data_dir)
        _restore(model, initial)  # fresh adapters and a fresh router row for every adaptation
        train_adapters(model, tokenizer, data.train, config.training_config(seed), progress=False,
                       description=f"{task} seed {seed}")
        allocation = _task_allocation(model, task_id)
        if allocation is not None:
            allocations.setdefault(task, []).append(allocation.tolist())
        for template, examples in data.evaluation.items():
            predictions = rank_classify(model, tokenizer, examples, length_normalize=config.length_normalize,
                                        batch_size=config.eval_batch_size)
            records.append({"task": task, "template": template, "seed": seed,
                            "accuracy": accuracy(examples, predictions), "n_examples": len(examples)})
        if on_task_done is not None:
            on_task_done({"records": records})

    # config.json records the folder actually read, so a rerun from it needs no environment.
    resolved = config.to_dict()
    if data_dir is not None:
        resolved["data_dir"] = str(data_dir)
    return {
        "config": resolved,
        "trainable_parameters": report.trainable_parameters,
        "total_parameters": report.total_parameters,
        "data_dir": None if data_dir is None else str(data_dir),
        "records": records,
        "summary": summarise(records),
        "allocation": {task: np.mean(rows, axis=0).tolist() for task, rows in allocations.items()},
        "seconds": time.perf_counter() - started,
    }
