r"""TensorPoly-II: TLoRA leaves routed per order, then multiplied.

Each order ``n`` has its own router row per task. The leaves of one order are mixed over the
terms first, and the mixed leaves are then multiplied (Kronecker product over the orders):

.. math::

    \bar a^{(n)}_{t j} = \sum_{k} w^{(n)}_{t k}\, a^{(n)}_{k j}, \qquad
    A_{t, :, j} = \big[\bar a^{(1)}_{t j} \otimes \dots \otimes \bar a^{(N)}_{t j}\big]_{1:d_\mathrm{in}}

and the same for B. TensorPoly-I instead mixes whole products, ``A_t = sum_k w_tk (a^(1)_k x ... x a^(N)_k)``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..routing import Router, logit_dtype
from ..tlora import Normalize, kron_leaves
from .base import AdapterLinear
from .fused import kronecker_update, use_fused_update
from .mixing import factors_per_distinct_task, init_tlora_leaves

__all__ = ["TensorPoly2Linear"]

class TensorPoly2Linear(AdapterLinear):
    """A frozen linear layer adapted by TLoRA leaves mixed per task and per order (TensorPoly-II).

    Parameters
    ----------
    base_layer
        The linear layer to adapt (frozen).
    rank
        LoRA rank r.
    n_tasks
        Rows of each order's router.
    n_terms
        K, the number of leaves per order that the router mixes.
    order
        N, the number of mixed leaves multiplied per factor column.
    normalize
        ``"pairwise"`` or ``"none"``, as in :func:`tensorpoly_tn.tlora.kron_leaves`.
    scaling
        Factor on the update; ``None`` means ``1 / rank``.
    selector
        Router selector, see :mod:`tensorpoly_tn.routing`.
    fused_training
        Run the training forward and backward as one fused autograd function
        (:func:`~tensorpoly_tn.layers.fused.kronecker_update`); ``False`` records every step with autograd.

    Attributes
    ----------
    leaves_a
        Parameter of shape (order, n_terms, rank, leaf_in), ``leaf_in = ceil(d_in ** (1/order))``.
    leaves_b
        Parameter of shape (order, n_terms, rank, leaf_out).
    router
        :class:`Router` with one split per order: logits of shape (n_tasks, order * n_terms).

    Notes
    -----
    Leaves are drawn from ``N(0, s^2)`` with ``s = sqrt(K) * d_in ** (-1 / (2 N))``: at uniform
    routing a mixed leaf then has variance ``s^2 / K`` and, under ``normalize="none"``, the product
    of the N mixed leaves has variance ``1 / d_in`` per entry. The last leaf of B starts at zero,
    so every mixed last leaf is zero, B_t is zero and the adapted layer equals the base layer at step 0.
    """

    method = "tensorpoly-2"

    def __init__(
        self,
        base_layer: nn.Linear,
        rank: int,
        n_tasks: int,
        n_terms: int,
        order: int,
        normalize: Normalize = "pairwise",
        scaling: float | None = None,
        selector: str = "sigmoid",
        fused_training: bool = True,
    ) -> None:
        super().__init__(base_layer, rank, scaling)
        self.fused_training = fused_training
        weight = base_layer.weight
        init_tlora_leaves(self, n_terms, order, normalize, lambda: n_terms**0.5 * self.in_features ** (-1.0 / (2 * order)))
        router = Router(n_tasks, n_terms, selector=selector, n_splits=order)
        self.router = router.to(weight.device, logit_dtype(weight.dtype))  # float32 logits beside half precision

    def _mixed_leaves(self, task_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the leaves mixed per task: (order, task, rank, leaf_in) and (order, task, rank, leaf_out)."""
        weights = self.router.weights(task_ids).to(self.leaves_a.dtype)  # (task, order, term)
        per_order = weights.transpose(0, 1)  # (order, task, term)
        # mixed[n, t, r, p] = sum_k w[t, n, k] leaves[n, k, r, p]: one bmm per factor with the order as its batch.
        mixed = [
            torch.bmm(per_order, leaves.flatten(2)).view(self.order, len(task_ids), self.rank, leaves.shape[-1])
            for leaves in (self.leaves_a, self.leaves_b)
        ]
        return mixed[0], mixed[1]  # (order, task, rank, leaf_in), (order, task, rank, leaf_out)

    def _build(self, task_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mixed_a, mixed_b = self._mixed_leaves(task_ids)
        a = kron_leaves(mixed_a, self.in_features, self.normalize)  # (task, rank, d_in)
        b = kron_leaves(mixed_b, self.out_features, self.normalize)  # (task, rank, d_out)
        return a.transpose(1, 2), b  # (task, d_in, rank), (task, rank, d_out)

    def factors(self, task_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return A (batch, d_in, rank) and B (batch, rank, d_out) for ``task_ids`` (batch,)."""
        return factors_per_distinct_task(task_ids, self._build)

    def update(self, inputs: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """Return ``x A B`` (batch, seq, d_out) for ``inputs`` (batch, seq, d_in).

        Without gradients the factors are built once per distinct task and applied with ``bmm``
        (:meth:`AdapterLinear.update`). With gradients the mixing of the leaves per example, the
        Kronecker products and both factor products run as one fused autograd node
        (:func:`~tensorpoly_tn.layers.fused.kronecker_update`), which saves the per-operation
        overhead that dominates a training step at small widths. With the sigmoid selector that
        node computes the routing weights too.
        """
        fused = self.fused_training and use_fused_update(inputs, self.leaves_a, self.leaves_b, self.router.logits)
        if not fused:
            return super().update(inputs, task_ids)
        leaves_a, leaves_b = self.leaves_a.to(inputs.dtype), self.leaves_b.to(inputs.dtype)
        logits = self.router.sigmoid_logits(task_ids)
        if logits is not None:
            return kronecker_update(inputs, leaves_a, leaves_b, self.out_features, "per-order",
                                    normalize=self.normalize, logits=logits, task_ids=task_ids)
        weights = self.router.weights(task_ids).to(inputs.dtype)  # (batch, order, term)
        return kronecker_update(inputs, leaves_a, leaves_b, self.out_features, "per-order", weights, self.normalize)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, n_terms={self.n_terms}, order={self.order}, "
            f"normalize={self.normalize!r}, leaf_in={self.leaf_in}, leaf_out={self.leaf_out}"
        )
