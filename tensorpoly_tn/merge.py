r"""Collapse routed adapters for one task: into a plain LoRA, or into the base weight.

For a fixed task ``t`` every method here is a LoRA update with factors ``A_t`` (d_in, rank) and
``B_t`` (rank, d_out): the router's weights for ``t`` are constants once training is over.

.. math::

    y = x W^\top + s\, x A_t B_t = x\,(W + s\, (A_t B_t)^\top)^\top

:func:`merge` keeps ``A_t`` and ``B_t`` as a :class:`tensorpoly_tn.LoRALinear`;
:func:`merge_into_base` folds them into ``W`` so inference costs no more than the bare model.
Router weights are taken in evaluation mode (no relaxed Bernoulli sampling), as inference uses them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator

import torch
from torch import nn

from .layers import AdapterLinear, LoRALinear

__all__ = ["task_factors", "merge", "merge_into_base"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _evaluation_mode(layer: nn.Module) -> Iterator[None]:
    was_training = layer.training
    layer.eval()
    try:
        yield
    finally:
        layer.train(was_training)


def _check_task(layer: AdapterLinear, task: int) -> torch.Tensor:
    if isinstance(task, bool) or not isinstance(task, int):
        raise TypeError(f"task must be an int task id, got {type(task).__name__} {task!r}")
    task_ids = torch.tensor([task], device=layer.weight.device)
    router = getattr(layer, "router", None)
    if router is not None:
        router.check_task_ids(task_ids)
    return task_ids


@torch.no_grad()
def task_factors(layer: AdapterLinear, task: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the LoRA factors of ``layer`` for ``task``: A_t (d_in, rank) and B_t (rank, d_out).

    Unrouted layers (lora, tlora) give the same factors for every task. The update of the layer
    for ``task`` is ``layer.scaling * x @ A_t @ B_t``.
    """
    task_ids = _check_task(layer, task)
    with _evaluation_mode(layer):
        a, b = layer.factors(task_ids if layer.routed else None)  # (1, d_in, rank), (1, rank, d_out)
    return a[0].detach().clone(), b[0].detach().clone()


def _merged_lora(layer: AdapterLinear, task: int) -> LoRALinear:
    a, b = task_factors(layer, task)
    merged = LoRALinear(layer.base_layer, layer.rank, layer.scaling)
    with torch.no_grad():
        merged.lora_a.copy_(a)
        merged.lora_b.copy_(b)
    config = getattr(layer, "adapter_config", None)
    if config is not None:
        merged.adapter_config = dataclasses.replace(
            config, method="lora", scaling=layer.scaling, router_only=False, tuned_task=None
        )
    return merged


def _merged_linear(layer: AdapterLinear, task: int) -> nn.Linear:
    a, b = task_factors(layer, task)
    base = layer.base_layer
    compute = torch.promote_types(base.weight.dtype, torch.float32)  # float32 for half weights, else as stored
    delta = layer.scaling * (a.to(compute) @ b.to(compute))  # (d_in, d_out)
    merged = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None)
    merged.to(device=base.weight.device, dtype=base.weight.dtype)
    with torch.no_grad():
        merged.weight.copy_((base.weight.to(compute) + delta.T).to(base.weight.dtype))  # (d_out, d_in)
        if base.bias is not None:
            merged.bias.copy_(base.bias)
    merged.requires_grad_(False)
    return merged


def _replace_adapters(model: nn.Module, build) -> int:
    if isinstance(model, AdapterLinear):
        raise TypeError(
            "merge and merge_into_base replace layers inside a model; for one layer call "
            "tensorpoly_tn.task_factors(layer, task)"
        )
    names = [name for name, module in model.named_modules() if isinstance(module, AdapterLinear)]
    if not names:
        raise ValueError("the model has no adapter layers to merge; call tensorpoly_tn.apply_adapters first")
    for name in names:
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child_name, build(getattr(parent, child_name)))
    return len(names)


def merge(model: nn.Module, task: int) -> nn.Module:
    """Replace every adapter layer of ``model`` by a plain LoRA holding its factors for ``task``.

    The result needs no task ids and gives the outputs the adapters give for ``task`` in
    evaluation mode, up to float rounding. The model is changed in place and returned.

    Raises
    ------
    ValueError
        When the model has no adapter layers, or ``task`` is outside a router.
    """
    count = _replace_adapters(model, lambda layer: _merged_lora(layer, task))
    logger.info("merged %d adapter layers into plain LoRA for task %d", count, task)
    return model


def merge_into_base(model: nn.Module, task: int) -> nn.Module:
    """Fold the adapters' update for ``task`` into the base weights, leaving plain ``nn.Linear`` layers.

    ``W <- W + scaling * (A_t B_t)^T``, computed in at least float32 and stored in the base weight's dtype.
    The model is changed in place and returned; its adapters are gone.

    Raises
    ------
    ValueError
        When the model has no adapter layers, or ``task`` is outside a router.
    """
    count = _replace_adapters(model, lambda layer: _merged_linear(layer, task))
    logger.info("folded %d adapter layers into their base weights for task %d", count, task)
    return model
