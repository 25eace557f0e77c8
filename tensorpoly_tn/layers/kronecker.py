"""The bases of the TLoRA family: leaves, their initialisation, the router and the training path.

:class:`KroneckerLinear` is the base of :class:`~tensorpoly_tn.TLoRALinear`, and
:class:`RoutedKroneckerLinear` adds the router of :class:`~tensorpoly_tn.TensorPolyLinear` and
:class:`~tensorpoly_tn.TensorPoly2Linear`. A subclass sets :attr:`KroneckerLinear.mixing`, the
mode of :func:`~tensorpoly_tn.layers.fused.kronecker_update` that its training step runs.
"""

from __future__ import annotations

import torch
from torch import nn

from ..planner.reverse import needs_hand_gradient
from ..routing import Router, logit_dtype
from ..tlora import NORMALIZE_CHOICES, Normalize, check_positive, leaf_length
from .base import AdapterLinear
from .fused import Mixing, kronecker_update

__all__ = ["tlora_leaves", "KroneckerLinear", "RoutedKroneckerLinear"]


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


class KroneckerLinear(AdapterLinear):
    """A frozen linear layer whose update factors are cut from Kronecker products of leaves.

    Parameters
    ----------
    base_layer
        The linear layer to adapt (frozen).
    rank
        LoRA rank r.
    n_terms
        K, the number of tensor-product terms (the latent experts).
    order
        N, the number of leaves multiplied per term.
    normalize
        ``"pairwise"`` (layer norm on each product of neighbouring leaves that feeds a further
        product, as in TensorPoly) or ``"none"`` (the plain Kronecker product), as in
        :func:`tensorpoly_tn.tlora.kron_leaves`.
    scaling
        Factor on the update; ``None`` means ``1 / rank``.
    fused_training
        Run the training forward and backward as one fused autograd function
        (:func:`~tensorpoly_tn.layers.fused.kronecker_update`); ``False`` records every step with autograd.

    Attributes
    ----------
    leaves_a
        Parameter of shape (order, n_terms, rank, leaf_in), ``leaf_in = ceil(d_in ** (1/order))``.
    leaves_b
        Parameter of shape (order, n_terms, rank, leaf_out), ``leaf_out = ceil(d_out ** (1/order))``.

    Notes
    -----
    ``leaves_a`` is drawn from ``N(0, s^2)`` with ``s`` from :meth:`leaf_std`. ``leaves_b`` is
    drawn the same way except its last leaf, which starts at zero. Every product of B's leaves is
    then zero, so the adapted layer equals the base layer at step 0, but the gradient reaching
    that last leaf is not zero.
    """

    #: The :func:`~tensorpoly_tn.layers.fused.kronecker_update` mode of the training step.
    mixing: Mixing = "sum"

    def __init__(
        self,
        base_layer: nn.Linear,
        rank: int,
        n_terms: int,
        order: int,
        normalize: Normalize = "pairwise",
        scaling: float | None = None,
        fused_training: bool = True,
    ) -> None:
        super().__init__(base_layer, rank, scaling)
        check_positive("n_terms", n_terms)
        check_positive("order", order)
        if normalize not in NORMALIZE_CHOICES:
            raise ValueError(f"normalize must be one of {NORMALIZE_CHOICES}, got {normalize!r}")
        self.n_terms = n_terms
        self.order = order
        self.normalize = normalize
        self.fused_training = fused_training
        self.leaf_in = leaf_length(self.in_features, order)
        self.leaf_out = leaf_length(self.out_features, order)
        weight = base_layer.weight
        std = self.leaf_std()
        self.leaves_a = nn.Parameter(tlora_leaves(order, n_terms, rank, self.leaf_in, std, False, weight))
        self.leaves_b = nn.Parameter(tlora_leaves(order, n_terms, rank, self.leaf_out, std, True, weight))

    def leaf_std(self) -> float:
        """Return the leaves' standard deviation ``(K d_in) ** (-1 / (2 N))``.

        The sum of the K products of N leaves then has variance ``1 / d_in`` per entry under
        ``normalize="none"``.
        """
        return (self.n_terms * self.in_features) ** (-1.0 / (2 * self.order))

    def trains_fused(self, inputs: torch.Tensor, *tensors: torch.Tensor) -> bool:
        """Return whether this call runs the fused kernel: ``fused_training`` is on and a gradient is needed."""
        return self.fused_training and needs_hand_gradient((inputs, self.leaves_a, self.leaves_b, *tensors))

    def fused_update(self, inputs: torch.Tensor, task_ids: torch.Tensor | None) -> torch.Tensor:
        """Return ``x A B`` (batch, seq, d_out) for ``inputs`` (batch, seq, d_in) from the fused kernel."""
        leaves_a, leaves_b = self.leaves_a.to(inputs.dtype), self.leaves_b.to(inputs.dtype)
        return kronecker_update(inputs, leaves_a, leaves_b, self.out_features, self.mixing, normalize=self.normalize)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, n_terms={self.n_terms}, order={self.order}, "
            f"normalize={self.normalize!r}, leaf_in={self.leaf_in}, leaf_out={self.leaf_out}"
        )


class RoutedKroneckerLinear(KroneckerLinear):
    """A :class:`KroneckerLinear` whose factors are mixed per task by a :class:`Router`.

    Parameters
    ----------
    base_layer, rank, n_terms, order, normalize, scaling, fused_training
        As in :class:`KroneckerLinear`, which also describes the leaves.
    n_tasks
        Rows of the router.
    selector
        Router selector, see :class:`tensorpoly_tn.routing.Router`.

    Attributes
    ----------
    router
        :class:`Router` over the n_terms, with one split per order when :attr:`mixing` is
        ``"per-order"``. Its logits are float32 beside half-precision weights, see
        :func:`tensorpoly_tn.routing.logit_dtype`.
    """

    mixing: Mixing = "weights"

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
        super().__init__(base_layer, rank, n_terms, order, normalize, scaling, fused_training)
        weight = base_layer.weight
        splits = order if self.mixing == "per-order" else 1
        router = Router(n_tasks, n_terms, selector=selector, n_splits=splits)
        self.router = router.to(weight.device, logit_dtype(weight.dtype))

    def trains_fused(self, inputs: torch.Tensor, *tensors: torch.Tensor) -> bool:
        return super().trains_fused(inputs, self.router.logits, *tensors)

    def fused_update(self, inputs: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """Return ``x A B`` from the fused kernel, which also computes the routing weights when it can.

        That is with the router's sigmoid selector (:meth:`Router.sigmoid_logits`). Other
        selectors compute the weights under autograd and pass them to the kernel.
        """
        leaves_a, leaves_b = self.leaves_a.to(inputs.dtype), self.leaves_b.to(inputs.dtype)
        logits = self.router.sigmoid_logits(task_ids)
        if logits is not None:
            return kronecker_update(inputs, leaves_a, leaves_b, self.out_features, self.mixing,
                                    normalize=self.normalize, logits=logits, task_ids=task_ids)
        weights = self.router.weights(task_ids).to(inputs.dtype)  # (batch, split, term)
        if self.mixing == "weights":
            weights = weights.flatten(1)  # one split: (batch, term)
        return kronecker_update(inputs, leaves_a, leaves_b, self.out_features, self.mixing, weights, self.normalize)
