"""Helpers shared by the routed layers: per-task factor building and TLoRA leaf initialisation."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..tlora import NORMALIZE_CHOICES, check_positive, leaf_length

__all__ = ["factors_per_distinct_task", "tlora_leaves", "init_tlora_leaves"]

FactorBuilder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def factors_per_distinct_task(task_ids: torch.Tensor, build: FactorBuilder) -> tuple[torch.Tensor, torch.Tensor]:
    """Build the factors once per distinct task in ``task_ids`` and gather them per row.

    A batch of B rows drawn from T distinct tasks then costs T factor builds instead of B, and
    rows of the same task share the same factors exactly.

    Parameters
    ----------
    task_ids
        Integer tensor of shape (batch,).
    build
        ``build(distinct_ids)`` with ids of shape (task,) returning A (task, d_in, rank) and
        B (task, rank, d_out).

    Returns
    -------
    tuple of torch.Tensor
        A (batch, d_in, rank) and B (batch, rank, d_out).
    """
    distinct, inverse = torch.unique(task_ids, return_inverse=True)  # (task,), (batch,)
    a, b = build(distinct)  # (task, d_in, rank), (task, rank, d_out)
    if distinct.numel() == task_ids.numel() and torch.equal(distinct, task_ids):
        return a, b
    return a[inverse], b[inverse]  # (batch, d_in, rank), (batch, rank, d_out)


def tlora_leaves(
    order: int,
    n_terms: int,
    rank: int,
    leaf: int,
    std: float,
    zero_last: bool,
    like: torch.Tensor,
) -> torch.Tensor:
    """Draw TLoRA leaves of shape (order, n_terms, rank, leaf) from N(0, std^2).

    With ``zero_last`` the last leaf (order index ``order - 1``) is zero, so every Kronecker
    product of the leaves, normalised or not, is zero. ``like`` gives the dtype and device.
    """
    leaves = torch.randn(order, n_terms, rank, leaf, dtype=like.dtype, device=like.device) * std
    if zero_last:
        leaves[-1].zero_()
    return leaves


def init_tlora_leaves(layer, n_terms: int, order: int, normalize: str, leaf_std: Callable[[], float]) -> None:
    """Check the TLoRA sizes and give ``layer`` its leaves, leaf lengths and settings.

    Sets ``n_terms``, ``order``, ``normalize``, ``leaf_in``, ``leaf_out`` and two parameters.
    ``leaves_a`` (order, n_terms, rank, leaf_in) is drawn from N(0, std^2), where ``std = leaf_std()``
    is called only after the sizes are checked. ``leaves_b`` (order, n_terms, rank, leaf_out) is
    drawn likewise with its last leaf zero, so that B starts at zero.
    ``layer`` is an :class:`~tensorpoly_tn.layers.base.AdapterLinear` whose base layer is set.
    """
    check_positive("n_terms", n_terms)
    check_positive("order", order)
    if normalize not in NORMALIZE_CHOICES:
        raise ValueError(f"normalize must be one of {NORMALIZE_CHOICES}, got {normalize!r}")
    layer.n_terms = n_terms
    layer.order = order
    layer.normalize = normalize
    layer.leaf_in = leaf_length(layer.in_features, order)
    layer.leaf_out = leaf_length(layer.out_features, order)
    weight = layer.base_layer.weight
    std = leaf_std()
    layer.leaves_a = nn.Parameter(tlora_leaves(order, n_terms, layer.rank, layer.leaf_in, std, False, weight))
    layer.leaves_b = nn.Parameter(tlora_leaves(order, n_terms, layer.rank, layer.leaf_out, std, True, weight))
