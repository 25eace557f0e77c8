r"""TLoRA: one shared pair of TLoRA factors, without routing.

Each factor is the sum of the ``n_terms`` Kronecker products of its leaves,

.. math::

    A_{:, j} = \Big[\sum_{k=1}^{K} a^{(1)}_{k j} \otimes \dots \otimes a^{(N)}_{k j}\Big]_{1:d_\mathrm{in}},

see :mod:`tensorpoly_tn.tlora`. It is TensorPoly-I with every routing weight fixed at 1.
"""

from __future__ import annotations

import torch
from torch import nn

from ..planner.adapters import tlora_update
from ..tlora import Normalize, kron_leaves
from .base import AdapterLinear
from .fused import kronecker_update, use_fused_update
from .mixing import init_tlora_leaves

__all__ = ["TLoRALinear"]


class TLoRALinear(AdapterLinear):
    """A frozen linear layer adapted by one TLoRA factor pair shared by every task.

    Parameters
    ----------
    base_layer
        The linear layer to adapt (frozen).
    rank
        LoRA rank r.
    n_terms
        K, the number of tensor-product terms summed per factor column.
    order
        N, the number of leaves multiplied per term.
    normalize
        ``"pairwise"`` or ``"none"``, as in :func:`tensorpoly_tn.tlora.kron_leaves`.
    scaling
        Factor on the update; ``None`` means ``1 / rank``.
    fused_training
        Run the training forward and backward as one fused autograd function
        (:func:`~tensorpoly_tn.layers.fused.kronecker_update`); ``False`` records every step with autograd.

    Attributes
    ----------
    leaves_a
        Parameter of shape (order, n_terms, rank, leaf_in).
    leaves_b
        Parameter of shape (order, n_terms, rank, leaf_out).

    Notes
    -----
    Initialised as :class:`tensorpoly_tn.TensorPolyLinear`: leaves from ``N(0, s^2)`` with
    ``s = (K d_in) ** (-1 / (2 N))``, so that the sum of terms has variance ``1 / d_in`` under
    ``normalize="none"``, and the last leaf of B at zero, so the adapted layer equals the base
    layer at step 0.
    """

    routed = False
    method = "tlora"

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
        self.fused_training = fused_training
        init_tlora_leaves(self, n_terms, order, normalize, lambda: (n_terms * self.in_features) ** (-1.0 / (2 * order)))

    def factors(self, task_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return A (1, d_in, rank) and B (1, rank, d_out), shared by every task."""
        a = kron_leaves(self.leaves_a, self.in_features, self.normalize).sum(0)  # (rank, d_in)
        b = kron_leaves(self.leaves_b, self.out_features, self.normalize).sum(0)  # (rank, d_out)
        return a.T.unsqueeze(0), b.unsqueeze(0)  # (1, d_in, rank), (1, rank, d_out)

    def update(self, inputs: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Return ``x A B`` (batch, seq, d_out) for ``inputs`` (batch, seq, d_in).

        Without gradients the unrouted TLoRA network is contracted by :mod:`tensorpoly_tn.planner`.
        With gradients the summed factors are built and applied by one fused autograd node
        (:func:`~tensorpoly_tn.layers.fused.kronecker_update`). Both equal :meth:`factors` then ``bmm``.
        """
        leaves_a, leaves_b = self.leaves_a.to(inputs.dtype), self.leaves_b.to(inputs.dtype)
        if self.fused_training and use_fused_update(inputs, leaves_a, leaves_b):
            return kronecker_update(inputs, leaves_a, leaves_b, self.out_features, "sum", normalize=self.normalize)
        return tlora_update(inputs, leaves_a, leaves_b, self.out_features, self.normalize)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, n_terms={self.n_terms}, order={self.order}, "
            f"normalize={self.normalize!r}, leaf_in={self.leaf_in}, leaf_out={self.leaf_out}"
        )
