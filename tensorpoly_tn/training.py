"""A small training loop for adapters and routers on prompted examples."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from .data.example import PromptedExample
from .inject import adapter_layers, use_tasks

__all__ = ["TrainingConfig", "collate", "train_adapters", "trainable_parameter_groups"]

logger = logging.getLogger(__name__)

LABEL_PAD = -100  # positions the cross-entropy loss ignores


@dataclass
class TrainingConfig:
    """Optimiser and batching settings of :func:`train_adapters`."""

    steps: int = 100
    batch_size: int = 8
    lr: float = 3e-3
    router_lr: float | None = None
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_input_length: int = 256
    max_target_length: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "max_input_length", "max_target_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("lr", "router_lr"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def collate(
    tokenizer,
    examples: Sequence[PromptedExample],
    max_input_length: int = 256,
    max_target_length: int = 64,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Tokenize a batch of examples for a seq2seq forward with labels.

    Returns
    -------
    dict
        ``input_ids`` and ``attention_mask`` (batch, seq_in), ``labels`` (batch, seq_out) with
        padding set to -100, and ``task_ids`` (batch,).
    """
    inputs = tokenizer(
        [e.input_text for e in examples],
        max_length=max_input_length,
        truncation=True,
        padding=True,
        return_tensors="pt",
    )
    targets = tokenizer(
        [e.target_text for e in examples],
        max_length=max_target_length,
        truncation=True,
        padding=True,
        return_tensors="pt",
    )
    labels = targets["input_ids"].masked_fill(targets["attention_mask"] == 0, LABEL_PAD)  # (batch, seq_out)
    batch = {
        "input_ids": inputs["input_ids"],
        "attention_mask": inputs["attention_mask"],
        "labels": labels,
        "task_ids": torch.tensor([e.task_id for e in examples], dtype=torch.long),
    }
    if device is not None:
        batch = {name: tensor.to(device) for name, tensor in batch.items()}
    return batch


def trainable_parameter_groups(model: nn.Module, lr: float, router_lr: float | None) -> list[dict]:
    """Split the trainable parameters into adapter and router groups with their learning rates."""
    adapters, routers = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (routers if ".router." in f".{name}." or name.startswith("router") else adapters).append(parameter)
    groups = [{"params": adapters, "lr": lr}]
    if routers:
        groups.append({"params": routers, "lr": router_lr if router_lr is not None else lr})
    return [group for group in groups if group["params"]]


def _batches(n_examples: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterable[list[int]]:
    """Yield ``steps`` index batches, reshuffling the examples at the start of every pass."""
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:
            order += torch.randperm(n_examples, generator=generator).tolist()
        yield order[:batch_size]
        order = order[batch_size:]


def train_adapters(
    model: nn.Module,
    tokenizer,
    examples: Sequence[PromptedExample],
    config: TrainingConfig,
    progress: bool = True,
    description: str = "training",
) -> list[float]:
    """Train the model's trainable parameters (adapters and routers) on ``examples``.

    Each step draws ``config.batch_size`` examples (reshuffled every pass, seeded by
    ``config.seed``), runs a forward with every row routed by its ``task_id``, and takes one AdamW
    step on the cross-entropy of the target tokens.

    Returns
    -------
    list[float]
        The loss of every step.
    """
    if not examples:
        raise ValueError("examples is empty; give at least one PromptedExample to train on")
    groups = trainable_parameter_groups(model, config.lr, config.router_lr)
    if not groups:
        raise ValueError("the model has no trainable parameters; call tensorpoly_tn.apply_adapters first")
    has_adapters = bool(adapter_layers(model))
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    parameters = [p for group in groups for p in group["params"]]

    was_training = model.training
    model.train()
    losses: list[float] = []
    bar = tqdm(total=config.steps, desc=description, disable=not progress, leave=False)
    try:
        for indices in _batches(len(examples), config.batch_size, config.steps, generator):
            batch = collate(
                tokenizer,
                [examples[i] for i in indices],
                config.max_input_length,
                config.max_target_length,
                device,
            )
            task_ids = batch.pop("task_ids")
            if has_adapters:
                with use_tasks(model, task_ids):
                    loss = model(**batch).loss
            else:
                loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
            optimizer.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    finally:
        bar.close()
        model.train(was_training)
    logger.debug("%s: %d steps, first loss %.4f, last loss %.4f", description, len(losses), losses[0], losses[-1])
    return losses
