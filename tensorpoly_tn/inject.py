"""Put adapters into a model in place of its linear layers, and pass task ids to them."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .config import TensorPolyConfig
from .layers import AdapterLinear
from .layers.registry import get_method_builder
from .routing import Router, get_selector

__all__ = [
    "AdapterReport",
    "apply_adapters",
    "adapter_layers",
    "use_tasks",
    "build_layer",
    "routers",
    "add_tasks",
    "train_routers_only",
    "finish_router_tuning",
]

logger = logging.getLogger(__name__)


@dataclass
class AdapterReport:
    """Summary of the layers :func:`apply_adapters` replaced and the parameters it left trainable."""

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
    """Wrap one linear layer with the adapter that ``config.method`` names.

    The layer keeps ``config`` as ``adapter_config``, which :func:`tensorpoly_tn.save_adapters` writes
    out, and takes the training mode of ``base_layer``, so that adapters put into a model in
    evaluation mode do not sample their routing.
    """
    layer = get_method_builder(config.method)(base_layer, config)
    layer.adapter_config = config
    layer.train(base_layer.training)
    return layer


def adapter_layers(model: nn.Module) -> dict[str, AdapterLinear]:
    """Return the adapter layers of ``model`` by module name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, AdapterLinear)}


def apply_adapters(model: nn.Module, config: TensorPolyConfig) -> AdapterReport:
    """Replace the linears whose names match ``config.target_modules`` and freeze the rest.

    The model is changed in place. Only adapter parameters (and routers) stay trainable; with
    ``config.router_only`` only the routers, see :func:`train_routers_only`.

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

    if config.router_only:
        train_routers_only(model, config.tuned_task)

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

    A layer whose batch is ``n`` times the number of ids repeats each id ``n`` times in a row
    (``repeat_interleave``). That is how ``model.generate()`` with ``num_beams`` or
    ``num_return_sequences`` expands the batch after the encoder, so the ids given for the
    inputs of ``generate()`` follow every beam and returned sequence.
    """
    layers = list(adapter_layers(model).values())
    if not layers:
        raise ValueError("the model has no adapter layers; call tensorpoly_tn.apply_adapters first")
    tensor = _as_task_tensor(task_ids)
    bounds = (int(tensor.min()), int(tensor.max())) if tensor.numel() else None
    for layer in layers:
        router = getattr(layer, "router", None)
        if router is not None:
            router.check_task_ids(tensor, bounds)
    previous = [layer.task_ids for layer in layers]
    try:
        for layer in layers:
            layer.task_ids = tensor
        yield model
    finally:
        for layer, ids in zip(layers, previous):
            layer.task_ids = ids


def routers(model: nn.Module) -> dict[str, Router]:
    """Return the routers of the adapter layers of ``model`` by module name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, Router)}


def _require_routers(model: nn.Module) -> dict[str, Router]:
    found = routers(model)
    if not found:
        methods = sorted({layer.method for layer in adapter_layers(model).values()})
        raise ValueError(
            f"the model has no routers (adapter methods {methods}); routing needs one of the methods "
            "poly, mhr, tensorpoly-1 or tensorpoly-2"
        )
    return found


def add_tasks(model: nn.Module, count: int = 1) -> int:
    """Append ``count`` task rows to every router of ``model``; return the first new task id.

    New rows are drawn as the initial logits are, so a new task starts near uniform weights. The
    ``n_tasks`` of each layer's ``adapter_config`` is raised to match.
    """
    first_ids = {router.add_tasks(count) for router in _require_routers(model).values()}
    if len(first_ids) != 1:
        raise ValueError(f"the routers of the model had different task counts {sorted(first_ids)}; cannot add a task to all")
    for layer in adapter_layers(model).values():
        config = getattr(layer, "adapter_config", None)
        if config is not None:
            layer.adapter_config = dataclasses.replace(config, n_tasks=config.n_tasks + count, tuned_task=None)
    return first_ids.pop()


def train_routers_only(model: nn.Module, task: int | None = None) -> int:
    """Freeze every adapter factor and leave only routing trainable (the "-z" variants).

    Parameters
    ----------
    model
        A model with routed adapters.
    task
        ``None`` trains every router row. A task id trains only that task's row of each router,
        held in a separate parameter ``router.tuned_logits`` so that no other row changes,
        whatever the optimiser. Call :func:`finish_router_tuning` to write it back.

    Returns
    -------
    int
        The number of trainable parameters left in the model.
    """
    found = _require_routers(model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name, router in found.items():
        if not get_selector(router.selector).uses_logits:
            raise ValueError(
                f"router {name!r} uses the {router.selector!r} selector, which ignores its logits, "
                "so router-only training would train nothing; use a selector such as 'sigmoid'"
            )
    for router in found.values():
        if task is None:
            router.finish_tuning()
            router.logits.requires_grad_(True)
        else:
            router.tune_only(task)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("router-only training: %d trainable parameters (task %s)", trainable, "all" if task is None else task)
    return trainable


def finish_router_tuning(model: nn.Module) -> None:
    """Write every router's tuned row back into its logits (see :meth:`Router.finish_tuning`)."""
    for router in routers(model).values():
        router.finish_tuning()
