r"""Per-task routers: a task x expert allocation matrix turned into mixing weights.

The router stores one row of logits per task. The default selector, as in Polytropon and
TensorPoly, takes the sigmoid of the logits and normalises the row to sum to one:

.. math::

    w_{t k} = \frac{\sigma(z_{t k})}{\sum_{k'} \sigma(z_{t k'})}

The experts are the n_terms of the TensorPoly tensor (TensorPoly-I), the skills of Poly, or any
other set of modules a layer mixes.
"""

from __future__ import annotations

import torch
from torch import nn

from .tlora import check_positive

__all__ = ["Router", "SELECTORS"]

SELECTORS: tuple[str, ...] = ("sigmoid",)
LOGIT_INIT_RANGE = 1e-3


class Router(nn.Module):
    """Task x expert allocation logits and the selector that turns them into weights.

    Parameters
    ----------
    n_tasks
        Number of task rows.
    n_experts
        Number of experts each row weights.
    selector
        How logits become weights; currently only ``"sigmoid"`` (sigmoid, then normalised to
        sum to one over the experts).
    """

    def __init__(self, n_tasks: int, n_experts: int, selector: str = "sigmoid") -> None:
        super().__init__()
        check_positive("n_tasks", n_tasks)
        check_positive("n_experts", n_experts)
        if selector not in SELECTORS:
            raise ValueError(f"selector must be one of {SELECTORS}, got {selector!r}")
        self.selector = selector
        # Near-zero logits give every task near-uniform weights at the start.
        self.logits = nn.Parameter(torch.empty(n_tasks, n_experts).uniform_(-LOGIT_INIT_RANGE, LOGIT_INIT_RANGE))

    @property
    def n_tasks(self) -> int:
        return self.logits.shape[0]

    @property
    def n_experts(self) -> int:
        return self.logits.shape[1]

    def check_task_ids(self, task_ids: torch.Tensor) -> None:
        """Raise ``ValueError`` when a task id is outside ``[0, n_tasks)``."""
        if task_ids.numel() == 0:
            return
        low, high = int(task_ids.min()), int(task_ids.max())
        if low < 0 or high >= self.n_tasks:
            bad = low if low < 0 else high
            raise ValueError(
                f"task id {bad} is outside the router, which has {self.n_tasks} tasks "
                f"(valid ids are 0 to {self.n_tasks - 1})"
            )

    def allocation(self) -> torch.Tensor:
        """Return the weights of every task, shape (task, expert)."""
        probabilities = torch.sigmoid(self.logits)  # (task, expert)
        return probabilities / probabilities.sum(dim=-1, keepdim=True)

    def forward(self, task_ids: torch.Tensor) -> torch.Tensor:
        """Return the mixing weights of each example.

        Parameters
        ----------
        task_ids
            Integer tensor of shape (batch,).

        Returns
        -------
        torch.Tensor
            Shape (batch, expert); each row sums to one.
        """
        self.check_task_ids(task_ids)
        return self.allocation()[task_ids]  # (batch, expert)
