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

from ..tlora import kron_leaves
from .fused import mix_per_order
from .kronecker import RoutedKroneckerLinear
from .mixing import factors_per_distinct_task

__all__ = ["TensorPoly2Linear"]


class TensorPoly2Linear(RoutedKroneckerLinear):
    """A frozen linear layer adapted by TLoRA leaves mixed per task and per order (TensorPoly-II).

    Parameters are those of :class:`~tensorpoly_tn.layers.kronecker.RoutedKroneckerLinear`:
    ``n_terms`` is the number of leaves per order that the router mixes, and each order has its
    own router split.

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
    mixing = "per-order"

    def leaf_std(self) -> float:
        """Return ``sqrt(K) * d_in ** (-1 / (2 N))``; see the class notes."""
        return self.n_terms**0.5 * self.in_features ** (-1.0 / (2 * self.order))

    def _build(self, task_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.router.weights(task_ids).to(self.leaves_a.dtype)  # (task, order, term)
        mixed_a = mix_per_order(self.leaves_a, weights)  # (order, task, rank, leaf_in)
        mixed_b = mix_per_order(self.leaves_b, weights)  # (order, task, rank, leaf_out)
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
        if self.trains_fused(inputs):
            return self.fused_update(inputs, task_ids)
        return super().update(inputs, task_ids)
