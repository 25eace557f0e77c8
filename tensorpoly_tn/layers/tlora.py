r"""TLoRA: one shared pair of TLoRA factors, without routing.

Each factor is the sum of the ``n_terms`` Kronecker products of its leaves,

.. math::

    A_{:, j} = \Big[\sum_{k=1}^{K} a^{(1)}_{k j} \otimes \dots \otimes a^{(N)}_{k j}\Big]_{1:d_\mathrm{in}},

see :mod:`tensorpoly_tn.tlora`. It is TensorPoly-I with every routing weight fixed at 1.
"""

from __future__ import annotations

import torch

from ..planner.adapters import tlora_update
from ..tlora import kron_leaves
from .kronecker import KroneckerLinear

__all__ = ["TLoRALinear"]


class TLoRALinear(KroneckerLinear):
    """A frozen linear layer adapted by one TLoRA factor pair shared by every task.

    Parameters, the leaves and their initialisation are those of
    :class:`~tensorpoly_tn.layers.kronecker.KroneckerLinear`: ``n_terms`` is the number of
    tensor-product terms summed per factor column.
    """

    routed = False
    method = "tlora"
    mixing = "sum"

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
        if self.trains_fused(inputs):
            return self.fused_update(inputs, task_ids)
        leaves_a, leaves_b = self.leaves_a.to(inputs.dtype), self.leaves_b.to(inputs.dtype)
        return tlora_update(inputs, leaves_a, leaves_b, self.out_features, self.normalize)
