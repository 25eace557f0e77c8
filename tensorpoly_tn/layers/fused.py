r"""The training-time update of the Kronecker-factor layers as one autograd function.

TLoRA, TensorPoly-I and TensorPoly-II all compute ``x A B`` where each factor is cut from
Kronecker products of small nodes (the leaves, mixed per task for TensorPoly-II). The nodes are
multiplied by the balanced tree of :func:`~tensorpoly_tn.tlora.kron_leaves`, with or without
the pairwise layer norm (see :mod:`tensorpoly_tn.layers.kron_tree`). For one side with nodes
``n_1 ... n_J`` of shape (term, rank, leg_j),

.. math::

    F_{t r} = \big[n_{1, t r} \otimes \dots \otimes n_{J, t r}\big]_{1:d}, \qquad
    A_{b r} = \begin{cases}
        \sum_t w_{b t} F_{t r} & \text{mixing "weights" (TensorPoly-I)} \\
        \sum_t F_{t r} & \text{mixing "sum" (TLoRA), shared by every example} \\
        F_{b r} & \text{mixing "each" (TensorPoly-II: one term per example)}
    \end{cases}

and the update is ``y = (x A^T) B`` per example. This is the planner's ``factors`` strategy
written out by hand: :class:`KroneckerUpdate` runs it as one autograd node with a hand-written
backward pass. At the widths of a small model the update costs little arithmetic, so a
training step's time goes to the per-operation overhead of autograd and of the generic planned
steps. The layers use this function when gradients are needed and the planner otherwise (see
:meth:`~tensorpoly_tn.layers.tensorpoly.TensorPolyLinear.update`). Tests check both against
factors materialised with :func:`~tensorpoly_tn.tlora.kron_leaves`.

Measured with ``tensorpoly-tn bench methods`` (2 CPU threads, d_model 256, rank 4, 8 terms,
order 2), a TensorPoly-I training step took 1.41 times PEFT LoRA's with the planner under
autograd, 1.39 times with the planner's planned backward pass, and 1.11 times with this function.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ..tlora import Normalize
from .kron_tree import tree_backward, tree_forward

__all__ = ["Mixing", "MIXINGS", "KroneckerUpdate", "kronecker_update", "use_fused_update"]

Mixing = Literal["weights", "sum", "each"]
MIXINGS: tuple[str, ...] = ("weights", "sum", "each")


def use_fused_update(*tensors: torch.Tensor) -> bool:
    """Return whether a call on ``tensors`` should run :func:`kronecker_update`.

    That is when a gradient is needed and autocast is off (under autocast the planner's path
    lets autograd cast each step's gradient).
    """
    return (
        torch.is_grad_enabled()
        and any(tensor.requires_grad for tensor in tensors)
        and not torch.is_autocast_enabled(tensors[0].device.type)
    )


def _mix(cut: torch.Tensor, weights: torch.Tensor | None, mixing: str) -> torch.Tensor:
    """Turn the cut products F (term, rank, d) into the factor (batch or 1, rank, d)."""
    if mixing == "weights":
        terms, rank, width = cut.shape
        mixed = torch.mm(weights, cut.reshape(terms, rank * width))  # (batch, rank * d)
        return mixed.view(weights.shape[0], rank, width)
    if mixing == "sum":
        return cut.sum(0, keepdim=True)  # (1, rank, d)
    return cut  # (batch, rank, d)


def _unmix(grad_factor: torch.Tensor, cut: torch.Tensor, weights: torch.Tensor | None, mixing: str):
    """Return the gradients of F (term, rank, d) and, for mixing "weights", the weights' share (batch, term)."""
    if mixing == "weights":
        flat = grad_factor.reshape(grad_factor.shape[0], -1)  # (batch, rank * d)
        grad_weights = torch.mm(flat, cut.reshape(cut.shape[0], -1).t())  # (batch, term)
        return torch.mm(weights.t(), flat).view(cut.shape), grad_weights
    if mixing == "sum":
        return grad_factor.expand(cut.shape), None
    return grad_factor, None


def _batched(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Multiply (batch, m, k) by (batch or 1, k, n), broadcasting a shared right factor."""
    if right.shape[0] == 1 and left.shape[0] != 1:
        return torch.matmul(left, right[0])
    return torch.bmm(left, right)


def _summed_outer(left: torch.Tensor, right: torch.Tensor, shared: bool) -> torch.Tensor:
    """Return ``left^T right`` per example (batch, m, n) from (batch, s, m) and (batch, s, n), or summed over the batch as (1, m, n)."""
    if shared:
        return torch.mm(left.reshape(-1, left.shape[-1]).t(), right.reshape(-1, right.shape[-1])).unsqueeze(0)
    return torch.bmm(left.transpose(1, 2), right)


class KroneckerUpdate(torch.autograd.Function):
    """``x A B`` with A and B built from Kronecker nodes, as one autograd node; see the module docstring.

    ``KroneckerUpdate.apply(x, weights, mixing, d_out, normalize, layout, *tensors)`` with ``x``
    (batch, seq, d_in), ``weights`` (batch, term) or ``None``, and the tensors of A then those of
    B, returns (batch, seq, d_out). ``layout`` holds ``(stacked, count)`` per factor: ``count``
    tensors each (term, rank, leg), or with ``stacked`` one tensor (node, term, rank, leg) of
    equal legs, whose gradient is then one tensor too (no unbind node in the graph).
    First derivatives only.
    """

    @staticmethod
    def forward(ctx, x, weights, mixing, d_out, normalize, layout, *tensors):
        (stacked_a, count_a), (stacked_b, _) = layout
        root_a, tape_a = tree_forward(_unstack(tensors[:count_a], stacked_a), normalize)  # (term, rank, full_in)
        root_b, tape_b = tree_forward(_unstack(tensors[count_a:], stacked_b), normalize)  # (term, rank, full_out)
        cut_a = root_a[..., : x.shape[-1]].contiguous()  # (term, rank, d_in)
        cut_b = root_b[..., :d_out].contiguous()  # (term, rank, d_out)
        factor_a, factor_b = _mix(cut_a, weights, mixing), _mix(cut_b, weights, mixing)  # (batch or 1, rank, d)
        hidden = _batched(x, factor_a.transpose(1, 2))  # (batch, seq, rank)
        result = _batched(hidden, factor_b)  # (batch, seq, d_out)

        ctx.save_for_backward(x, weights, factor_a, factor_b, hidden, cut_a, cut_b, *tape_a.values, *tape_b.values)
        ctx.counts = (len(tape_a.values), len(tape_b.values))
        ctx.full = (root_a.shape[-1], root_b.shape[-1])
        tape_a.values, tape_b.values = [], []  # the tensors travel through save_for_backward
        ctx.mixing, ctx.layout, ctx.tapes = mixing, layout, (tape_a, tape_b)
        return result

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_result):
        x, weights, factor_a, factor_b, hidden, cut_a, cut_b, *values = ctx.saved_tensors
        (stacked_a, _), (stacked_b, _) = ctx.layout
        tape_a, tape_b = ctx.tapes
        tape_a.values, tape_b.values = values[: ctx.counts[0]], values[ctx.counts[0] :]
        mixing = ctx.mixing
        shared = factor_a.shape[0] == 1 and x.shape[0] != 1
        grad_result = grad_result.contiguous()
        grad_factor_b = _summed_outer(hidden, grad_result, shared)  # (batch or 1, rank, d_out)
        grad_hidden = _batched(grad_result, factor_b.transpose(1, 2))  # (batch, seq, rank)
        grad_x = _batched(grad_hidden, factor_a) if ctx.needs_input_grad[0] else None  # (batch, seq, d_in)
        grad_factor_a = _summed_outer(grad_hidden, x, shared)  # (batch or 1, rank, d_in)

        grad_cut_a, grad_weights_a = _unmix(grad_factor_a, cut_a, weights, mixing)
        grad_cut_b, grad_weights_b = _unmix(grad_factor_b, cut_b, weights, mixing)
        grad_weights = None if grad_weights_a is None else grad_weights_a + grad_weights_b
        grads_a = _restack(tree_backward(_pad_to(grad_cut_a, ctx.full[0]), tape_a), stacked_a)
        grads_b = _restack(tree_backward(_pad_to(grad_cut_b, ctx.full[1]), tape_b), stacked_b)
        return (grad_x, grad_weights, None, None, None, None, *grads_a, *grads_b)


def _pad_to(grad_cut: torch.Tensor, full: int) -> torch.Tensor:
    """Pad the gradient of the cut product (term, rank, d) with zeros to the root's length ``full``."""
    return F.pad(grad_cut, (0, full - grad_cut.shape[-1])) if grad_cut.shape[-1] < full else grad_cut


def _unstack(tensors: tuple[torch.Tensor, ...], stacked: bool) -> tuple[torch.Tensor, ...]:
    return tuple(tensors[0].unbind(0)) if stacked else tuple(tensors)


def _restack(grads: list[torch.Tensor], stacked: bool) -> list[torch.Tensor]:
    return [torch.stack(grads)] if stacked else grads


def kronecker_update(
    x: torch.Tensor,
    nodes_a: torch.Tensor | Sequence[torch.Tensor],
    nodes_b: torch.Tensor | Sequence[torch.Tensor],
    d_out: int,
    mixing: Mixing,
    weights: torch.Tensor | None = None,
    normalize: Normalize = "none",
) -> torch.Tensor:
    """Return ``x A B`` (batch, seq, d_out) with A and B built from Kronecker nodes, as one autograd node.

    Parameters
    ----------
    x
        Shape (batch, seq, d_in).
    nodes_a, nodes_b
        The nodes of A and of B: a sequence of tensors (term, rank, leg), or one tensor
        (node, term, rank, leg) when every leg has the same length (the leaves themselves, say).
        The product of a factor's legs is at least its width (d_in or d_out) and is cut to it.
    d_out
        Width of the output.
    mixing
        ``"weights"``: A is mixed per example by ``weights`` (batch, term). ``"sum"``: the terms
        are summed and the factors are shared by every example. ``"each"``: term ``b`` is example
        ``b`` (term == batch).
    weights
        Routing weights (batch, term) for mixing "weights"; otherwise ``None``.
    normalize
        How the nodes are multiplied, as in :func:`~tensorpoly_tn.tlora.kron_leaves`: ``"none"``
        or ``"pairwise"`` (layer norm on every product that feeds a further one).
    """
    if mixing not in MIXINGS:
        raise ValueError(f"mixing must be one of {MIXINGS}, got {mixing!r}")
    if (weights is not None) != (mixing == "weights"):
        given = "with" if weights is not None else "without"
        raise ValueError(
            f"routing weights must be given for mixing 'weights' and omitted otherwise; got mixing {mixing!r} {given} weights"
        )
    tensors_a = [nodes_a] if isinstance(nodes_a, torch.Tensor) else list(nodes_a)
    tensors_b = [nodes_b] if isinstance(nodes_b, torch.Tensor) else list(nodes_b)
    terms = nodes_a.shape[1] if isinstance(nodes_a, torch.Tensor) else nodes_a[0].shape[0]
    if mixing == "each" and terms != x.shape[0]:
        raise ValueError(f"mixing 'each' needs one term per example; got {terms} terms for a batch of {x.shape[0]}")
    layout = ((isinstance(nodes_a, torch.Tensor), len(tensors_a)), (isinstance(nodes_b, torch.Tensor), len(tensors_b)))
    return KroneckerUpdate.apply(x, weights, mixing, d_out, normalize, layout, *tensors_a, *tensors_b)
