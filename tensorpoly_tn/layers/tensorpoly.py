"""TLoRA factors routed per task over their terms: TensorPoly-I."""

from __future__ import annotations

import torch
from torch import nn

from ..indices import equation
from ..planner.adapters import tlora_update
from ..routing import Router, logit_dtype
from ..tlora import Normalize, kron_leaves
from .base import AdapterLinear
from .fused import kronecker_update, use_fused_update
from .mixing import init_tlora_leaves

__all__ = ["TensorPolyLinear"]

# A[b, i, r] = sum_k w[b, k] A_k[k, r, i]
_MIX_A = equation([("batch", "term"), ("term", "rank", "d_in")], ("batch", "d_in", "rank"))
# B[b, r, o] = sum_k w[b, k] B_k[k, r, o]
_MIX_B = equation([("batch", "term"), ("term", "rank", "d_out")], ("batch", "rank", "d_out"))


class TensorPolyLinear(AdapterLinear):
    """A frozen linear layer adapted by TLoRA factors mixed per task over their n_terms.

    Parameters
    ----------
    base_layer
        The linear layer to adapt (frozen).
    rank
        LoRA rank r.
    n_tasks
        Rows of the router.
    n_terms
        K, the number of tensor-product terms (the latent experts).
    order
        N, the number of leaves multiplied per term.
    normalize
        ``"pairwise"`` (layer norm on each product of neighbouring leaves that feeds a further
        product, as in TensorPoly) or ``"none"`` (the plain Kronecker sum).
    scaling
        Factor on the update; ``None`` means ``1 / rank``.
    selector
        Router selector, see :class:`tensorpoly_tn.routing.Router`.
    fused_training
        Run the training forward and backward as one fused autograd function
        (:func:`~tensorpoly_tn.layers.fused.kronecker_update`); ``False`` records every step with autograd.

    Attributes
    ----------
    leaves_a
        Parameter of shape (order, n_terms, rank, leaf_in), ``leaf_in = ceil(d_in ** (1/order))``.
    leaves_b
        Parameter of shape (order, n_terms, rank, leaf_out), ``leaf_out = ceil(d_out ** (1/order))``.
    router
        :class:`Router` with an allocation of shape (n_tasks, n_terms).

    Notes
    -----
    ``leaves_a`` is drawn from a normal distribution whose scale makes the Kronecker sum have
    variance ``1 / d_in`` per entry under ``normalize="none"``. ``leaves_b`` is drawn the same way
    except its last leaf, which starts at zero: every term of B is then zero, so the adapted layer
    equals the base layer at step 0, while the gradient reaching that last leaf is not zero.
    """

    method = "tensorpoly-1"

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
        init_tlora_leaves(self, n_terms, order, normalize, lambda: (n_terms * self.in_features) ** (-1.0 / (2 * order)))
        router = Router(n_tasks, n_terms, selector=selector)
        self.router = router.to(weight.device, logit_dtype(weight.dtype))  # float32 logits beside half precision

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
        leaves_a, leaves_b = self.leaves_a.to(inputs.dtype), self.leaves_b.to(inputs.dtype)
        if self.fused_training and use_fused_update(inputs, leaves_a, leaves_b, self.router.logits):
            logits = self.router.sigmoid_logits(task_ids)
            if logits is not None:
                return kronecker_update(inputs, leaves_a, leaves_b, self.out_features, "weights",
                                        normalize=self.normalize, logits=logits, task_ids=task_ids)
            weights = self.router(task_ids).to(inputs.dtype)  # (batch, term)
            return kronecker_update(inputs, leaves_a, leaves_b, self.out_features, "weights", weights, self.normalize)
        weights = self.router(task_ids).to(inputs.dtype)  # (batch, term)
        return tlora_update(inputs, leaves_a, leaves_b, self.out_features, self.normalize, weights)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, n_terms={self.n_terms}, order={self.order}, "
            f"normalize={self.normalize!r}, leaf_in={self.leaf_in}, leaf_out={self.leaf_out}"
        )
