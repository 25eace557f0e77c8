r"""Polytropon (Poly) and Multi-Head Routing (MHR): a per-task mixture of LoRA skills.

Poly keeps ``n_skills`` LoRA modules per layer and mixes them with task weights from a router:

.. math::

    A_t = \sum_{m} w_{t m} A_m, \qquad B_t = \sum_{m} w_{t m} B_m

MHR cuts every skill into ``n_splits`` heads and routes each head separately. The layout follows
PEFT's ``poly`` tuner (peft 0.21, ``tuners/poly/layer.py``): head ``h`` of A covers input rows
``h * d_in / n_splits`` to ``(h + 1) * d_in / n_splits`` with the full rank, and head ``h`` of B
covers the same slice of output columns. The update is ``scaling * x A_t B_t`` with scaling
``1 / rank`` by default, as in PEFT, so weights copied across give the same outputs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..indices import equation
from ..routing import Router, logit_dtype
from ..tlora import check_positive
from .base import AdapterLinear
from .mixing import factors_per_distinct_task

__all__ = ["PolyLinear", "MHRLinear"]

# A[b, h, u, r] = sum_m w[b, h, m] A[h, m, u, r]
_MIX_A = equation(
    [("batch", "split", "skill"), ("split", "skill", "split_in", "rank")], ("batch", "split", "split_in", "rank")
)
# B[b, h, r, v] = sum_m w[b, h, m] B[h, m, r, v]
_MIX_B = equation(
    [("batch", "split", "skill"), ("split", "skill", "rank", "split_out")], ("batch", "split", "rank", "split_out")
)


class PolyLinear(AdapterLinear):
    """A frozen linear layer adapted by ``n_skills`` LoRA modules mixed per task.

    Parameters
    ----------
    base_layer
        The linear layer to adapt (frozen).
    rank
        LoRA rank r of every skill.
    n_tasks
        Rows of the router.
    n_skills
        Number of LoRA modules (skills) mixed by the router.
    n_splits
        Heads per skill, each routed separately; 1 for Poly. Must divide d_in and d_out.
    scaling
        Factor on the update; ``None`` means ``1 / rank``.
    selector
        Router selector, see :mod:`tensorpoly_tn.routing`.

    Attributes
    ----------
    poly_lora_a
        Parameter of shape (n_splits, n_skills, d_in // n_splits, rank).
    poly_lora_b
        Parameter of shape (n_splits, n_skills, rank, d_out // n_splits).
    router
        :class:`Router` with logits of shape (n_tasks, n_splits * n_skills).

    Notes
    -----
    Each head of each skill of A is drawn like ``nn.Linear``'s default weight,
    ``U(-1 / sqrt(d_in / n_splits), 1 / sqrt(d_in / n_splits))``, and B starts at zero, so the
    adapted layer equals the base layer at step 0 (PEFT's ``init_weights=True``).
    """

    method = "poly"

    def __init__(
        self,
        base_layer: nn.Linear,
        rank: int,
        n_tasks: int,
        n_skills: int,
        n_splits: int = 1,
        scaling: float | None = None,
        selector: str = "sigmoid",
    ) -> None:
        super().__init__(base_layer, rank, scaling)
        check_positive("n_skills", n_skills)
        check_positive("n_splits", n_splits)
        for name, width in (("in_features", self.in_features), ("out_features", self.out_features)):
            if width % n_splits:
                raise ValueError(
                    f"n_splits must divide the layer's {name}; got n_splits={n_splits} and {name}={width}. "
                    f"Choose a divisor of {width}"
                )
        self.n_skills = n_skills
        self.n_splits = n_splits
        weight = base_layer.weight
        options = {"dtype": weight.dtype, "device": weight.device}
        split_in, split_out = self.in_features // n_splits, self.out_features // n_splits
        bound = 1.0 / math.sqrt(split_in)
        self.poly_lora_a = nn.Parameter(torch.empty(n_splits, n_skills, split_in, rank, **options).uniform_(-bound, bound))
        self.poly_lora_b = nn.Parameter(torch.zeros(n_splits, n_skills, rank, split_out, **options))
        router = Router(n_tasks, n_skills, selector=selector, n_splits=n_splits)
        self.router = router.to(weight.device, logit_dtype(weight.dtype))  # float32 logits beside half precision

    def _build(self, task_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.router.weights(task_ids).to(self.poly_lora_a.dtype)  # (task, split, skill)
        a = torch.einsum(_MIX_A, weights, self.poly_lora_a)  # (task, split, split_in, rank)
        b = torch.einsum(_MIX_B, weights, self.poly_lora_b)  # (task, split, rank, split_out)
        a = a.reshape(len(task_ids), self.in_features, self.rank)  # (task, d_in, rank)
        b = b.transpose(1, 2).reshape(len(task_ids), self.rank, self.out_features)  # (task, rank, d_out)
        return a, b

    def factors(self, task_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return A (batch, d_in, rank) and B (batch, rank, d_out) for ``task_ids`` (batch,)."""
        return factors_per_distinct_task(task_ids, self._build)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_skills={self.n_skills}, n_splits={self.n_splits}"


class MHRLinear(PolyLinear):
    """Multi-Head Routing: :class:`PolyLinear` whose skills are cut into ``n_splits`` routed heads."""

    method = "mhr"
