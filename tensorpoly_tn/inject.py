"""Put adapters into a model in place of its linear layers, and pass task ids to them."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .config import TensorPolyConfig
from .layers import AdapterLinear, LoRALinear, TensorPolyLinear

__all__ = ["AdapterReport", "apply_adapters", "adapter_layers", "use_tasks", "build_layer"]

logger = logging.getLogger(__name__)


@dataclass
class AdapterReport:
    """What :func:`apply_adapters` changed."""

    replaced: list[str]
    trainable_parameters: int
    total_parameters: int

    def __str__(self) -> str:
        share = 100.0 * self.trainable_parameters / max(self.total_parameters, 1)
        return (
            f"adapted {len(self.replaced)} linear layers; trainable parameters: "
            f"{self.trainable_parameters:,} of {self.total_parameters:,} ({share:.3f}%)"
        )


def build_layer(base_layer: nn.Linear, config: TensorPolyConfig) -> AdapterLinear:
    """Wrap one linear layer with the adapter that ``config.method`` names."""
    if config.method == "lora":
        return LoRALinear(base_layer, config.rank, config.scaling)
    if config.method == "tensorpoly-1":
        return TensorPolyLinear(
            base_layer,
            rank=config.rank,
            n_tasks=config.n_tasks,
            n_terms=config.n_terms,
            order=config.order,
            normalize=config.normalize,
            scaling=config.scaling,
            selector=config.selector,
        )
    raise ValueError(f"unknown method {config.method!r}")


def adapter_layers(model: nn.Module) -> dict[str, AdapterLinear]:
    """Return the adapter layers of ``model`` by module name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, AdapterLinear)}


def apply_adapters(model: nn.Module, config: TensorPolyConfig) -> AdapterReport:
    """Replace the linears whose names match ``config.target_modules`` and freeze the rest.

    The model is changed in place. Only adapter parameters (and routers) stay trainable.

    Raises
    ------
    ValueError
        When no linear layer matches, or the model already has adapters.
    """
    if adapter_layers(model):
        raise ValueError("the model already has adapters; apply_adapters works on a model without them")
    patterns = [re.compile(pattern) for pattern in config.target_modules]
    targets = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and any(p.fullmatch(name) for p in patterns)
    ]
    if not targets:
        raise ValueError(
            f"no nn.Linear module name matches target_modules {list(config.target_modules)}; "
            "print [n for n, m in model.named_modules()] to see the names"
        )
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name in targets:
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child_name, build_layer(getattr(parent, child_name), config))

    report = AdapterReport(
        replaced=targets,
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_parameters=sum(p.numel() for p in model.parameters()),
    )
    logger.info("%s (method %s)", report, config.method)
    return report


def _as_task_tensor(task_ids: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
    if isinstance(task_ids, torch.Tensor):
        tensor = task_ids
    elif isinstance(task_ids, int):
        tensor = torch.tensor([task_ids])
    else:
        tensor = torch.as_tensor(list(task_ids))
    if tensor.dim() == 0:
        tensor = tensor.reshape(1)
    if tensor.dim() != 1 or tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        raise ValueError(
            f"task_ids must be an int, a sequence of ints or a 1-D integer tensor, got dtype "
            f"{tensor.dtype} and shape {tuple(tensor.shape)}"
        )
    return tensor.long()


@contextlib.contextmanager
def use_tasks(model: nn.Module, task_ids: int | Sequence[int] | torch.Tensor) -> Iterator[nn.Module]:
    """Route every adapter of ``model`` by ``task_ids`` inside the ``with`` block.

    ``task_ids`` gives one task per row of the batch, shape (batch,), or one int for the whole
    batch. Ids are checked against each router. The ids are cleared on exit, also on error.
    """
    layers = list(adapter_layers(model).values())
    if not layers:
        raise ValueError("the model has no adapter layers; call tensorpoly_tn.apply_adapters first")
    tensor = _as_task_tensor(task_ids)
    for layer in layers:
        router = getattr(layer, "router", None)
        if router is not None:
            router.check_task_ids(tensor)
    previous = [layer.task_ids for layer in layers]
    try:
        for layer in layers:
            layer.task_ids = tensor
        yield model
    finally:
        for layer, ids in zip(layers, previous):
            layer.task_ids = ids
