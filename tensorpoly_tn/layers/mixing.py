"""Per-task factor building shared by the routed layers that materialise their factors."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["factors_per_distinct_task"]

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
