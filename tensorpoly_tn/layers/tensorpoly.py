"""TLoRA factors routed per task over their terms: TensorPoly-I."""

from __future__ import annotations

import torch

from ..indices import equation
from ..planner.adapters import tlora_update
from ..tlora import kron_leaves
from .kronecker import RoutedKroneckerLinear

__all__ = ["TensorPolyLinear"]

# A[b, i, r] = sum_k w[b, k] A_k[k, r, i]
_MIX_A = equation([("batch", "term"), ("term", "rank", "d_in")], ("batch", "d_in", "rank"))
# B[b, r, o] = sum_k w[b, k] B_k[k, r, o]
_MIX_B = equation([("batch", "term"), ("term", "rank", "d_out")], ("batch", "rank", "d_out"))


class TensorPolyLinear(RoutedKroneckerLinear):
    """A frozen linear layer adapted by TLoRA factors mixed per task over their n_terms.

    Parameters, the leaves and their initialisation are those of
    :class:`~tensorpoly_tn.layers.kronecker.RoutedKroneckerLinear`.

    Attributes
    ----------
    router
        :class:`Router` with an allocation of shape (n_tasks, n_terms).
    """

    method = "tensorpoly-1"
    mixing = "weights"

    def term_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the unrouted terms: A_k (term, rank, d_in) and B_k (term, rank, d_out)."""
        terms_a = kron_leaves(self.leaves_a, self.in_features, self.normalize)  # (term, rank, d_in)
        terms_b = kron_leaves(self.leaves_b, self.out_features, self.normalize)  # (term, rank, d_out)
        return terms_a, terms_b

    def factors(self, task_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return A (batch, d_in, rank) and B (batch, rank, d_out) for the tasks in ``task_ids`` (batch,)."""
        weights = self.router(task_ids).to(self.leaves_a.dtype)  # (batch, term)
        terms_a, terms_b = self.term_factors()
        a = torch.einsum(_MIX_A, weights, terms_a)  # (batch, d_in, rank)
        b = torch.einsum(_MIX_B, weights, terms_b)  # (batch, rank, d_out)
        return a, b

    def update(self, inputs: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """Return ``x A B`` (batch, seq, d_out) for ``inputs`` (batch, seq, d_in) without forming A per token.

        Without gradients, the TensorPoly-I network (leaves, or the normalised children of the
        root product, and the routing weights) runs through :mod:`tensorpoly_tn.planner`, which
        picks the cheapest contraction order for the shapes. With gradients, the factors
        strategy runs as one fused autograd node (:func:`~tensorpoly_tn.layers.fused.kronecker_update`),
        which saves the per-operation overhead that dominates a training step at small widths.
        With the sigmoid selector that node computes the routing weights too. All paths equal
        :meth:`factors` then ``bmm``.
        """
        if self.trains_fused(inputs):
            return self.fused_update(inputs, task_ids)
        weights = self.router(task_ids).to(inputs.dtype)  # (batch, term)
        leaves_a, leaves_b = self.leaves_a.to(inputs.dtype), self.leaves_b.to(inputs.dtype)
        return tlora_update(inputs, leaves_a, leaves_b, self.out_features, self.normalize, weights)
