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
autograd and 1.39 times with the planner's planned backward pass. With this function, routing
weights included, it took 1.10 to 1.14 times.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ..routing import normalized_sigmoid, normalized_sigmoid_backward
from ..tlora import Normalize
from .kron_tree import tree_backward, tree_forward

__all__ = ["Mixing", "MIXINGS", "KroneckerUpdate", "kronecker_update", "mix_per_order"]

Mixing = Literal["weights", "sum", "each", "per-order"]
MIXINGS: tuple[str, ...] = ("weights", "sum", "each", "per-order")


def _mix(cut: torch.Tensor, weights: torch.Tensor | None, mixing: str) -> torch.Tensor:
    """Turn the cut products F (term, rank, d) into the factor (batch or 1, rank, d)."""
    if mixing == "weights":
        terms, rank, width = cut.shape
        mixed = torch.mm(weights, cut.reshape(terms, rank * width))  # (batch, rank * d)
        return mixed.view(weights.shape[0], rank, width)
    if mixing == "sum":
        return cut.sum(0, keepdim=True)  # (1, rank, d)
    return cut  # "each" and "per-order": (batch, rank, d)


def _unmix(grad_factor: torch.Tensor, cut: torch.Tensor, weights: torch.Tensor | None, mixing: str):
    """Return the gradients of F (term, rank, d) and, for mixing "weights", the weights' share (batch, term)."""
    if mixing == "weights":
        flat = grad_factor.reshape(grad_factor.shape[0], -1)  # (batch, rank * d)
        grad_weights = torch.mm(flat, cut.reshape(cut.shape[0], -1).t())  # (batch, term)
        return torch.mm(weights.t(), flat).view(cut.shape), grad_weights
    if mixing == "sum":
        return grad_factor.expand(cut.shape), None
    return grad_factor, None


def mix_per_order(leaves: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mix each order's leaves (order, term, rank, leaf) by its weights (batch, order, term): (order, batch, rank, leaf).

    ``mixed[n, b, r, p] = sum_k w[b, n, k] leaves[n, k, r, p]``, as one ``bmm`` with the order as its batch.
    """
    order, terms, rank, leaf = leaves.shape
    mixed = torch.bmm(weights.transpose(0, 1), leaves.reshape(order, terms, rank * leaf))  # (order, batch, rank * leaf)
    return mixed.view(order, weights.shape[0], rank, leaf)


def _unmix_per_order(grad_mixed: torch.Tensor, leaves: torch.Tensor, weights: torch.Tensor):
    """Return the gradients of the leaves (order, term, rank, leaf) and of the weights (batch, order, term)."""
    order, batch = grad_mixed.shape[:2]
    flat = grad_mixed.reshape(order, batch, -1)  # (order, batch, rank * leaf)
    grad_leaves = torch.bmm(weights.permute(1, 2, 0), flat).view(leaves.shape)  # (order, term, rank * leaf)
    grad_weights = torch.bmm(flat, leaves.reshape(order, leaves.shape[1], -1).transpose(1, 2))  # (order, batch, term)
    return grad_leaves, grad_weights.transpose(0, 1)


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


def _routing_weights(logits: torch.Tensor, task_ids: torch.Tensor, splits: int):
    """Return the normalised-sigmoid weights (batch, split, term) of the rows ``task_ids`` of ``logits``, and their saved state."""
    rows = logits[task_ids].to(torch.promote_types(logits.dtype, torch.float32))  # (batch, split * term)
    return normalized_sigmoid(rows.view(len(task_ids), splits, -1))


class KroneckerUpdate(torch.autograd.Function):
    """``x A B`` with A and B built from Kronecker nodes, as one autograd node; see :func:`kronecker_update`.

    ``KroneckerUpdate.apply(x, weights, logits, task_ids, mixing, d_out, normalize, layout, *tensors)``
    takes the tensors of A then those of B. ``layout`` gives ``(stacked, count)`` per factor:
    ``count`` tensors each (term, rank, leg), or with ``stacked`` one tensor
    (node, term, rank, leg) whose gradient is then one tensor too (no unbind node in the graph).
    First derivatives only.
    """

    @staticmethod
    def forward(ctx, x, weights, logits, task_ids, mixing, d_out, normalize, layout, *tensors):
        (stacked_a, count_a), (stacked_b, _) = layout
        sides = (tensors[:count_a], tensors[count_a:])
        routing = ()
        if logits is not None:
            splits = tensors[0].shape[0] if mixing == "per-order" else 1
            routed, routing = _routing_weights(logits, task_ids, splits)  # (batch, split, term)
            weights = routed.to(x.dtype) if mixing == "per-order" else routed.view(len(task_ids), -1).to(x.dtype)

        roots, tapes = [], []
        for (stacked, _), side in zip(layout, sides):
            nodes = mix_per_order(side[0], weights).unbind(0) if mixing == "per-order" else _unstack(side, stacked)
            root, tape = tree_forward(nodes, normalize)  # (term or batch, rank, full)
            roots.append(root)
            tapes.append(tape)
        cut_a = roots[0][..., : x.shape[-1]].contiguous()  # (term, rank, d_in)
        cut_b = roots[1][..., :d_out].contiguous()  # (term, rank, d_out)
        factor_a, factor_b = _mix(cut_a, weights, mixing), _mix(cut_b, weights, mixing)  # (batch or 1, rank, d)
        hidden = _batched(x, factor_a.transpose(1, 2))  # (batch, seq, rank)
        result = _batched(hidden, factor_b)  # (batch, seq, d_out)

        leaves = (tensors[0], tensors[count_a]) if mixing == "per-order" else (None, None)
        ctx.save_for_backward(
            x, weights, task_ids, factor_a, factor_b, hidden, cut_a, cut_b, *leaves, *routing,
            *tapes[0].values, *tapes[1].values,
        )
        ctx.counts = (len(routing), len(tapes[0].values), len(tapes[1].values))
        ctx.full = (roots[0].shape[-1], roots[1].shape[-1])
        ctx.logits = None if logits is None else (logits.shape, logits.dtype)
        for tape in tapes:
            tape.values = []  # the tensors travel through save_for_backward
        ctx.mixing, ctx.layout, ctx.tapes = mixing, layout, tapes
        return result

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_result):
        x, weights, task_ids, factor_a, factor_b, hidden, cut_a, cut_b, leaves_a, leaves_b, *rest = ctx.saved_tensors
        n_routing, n_values_a, _ = ctx.counts
        routing, rest = rest[:n_routing], rest[n_routing:]
        tape_a, tape_b = ctx.tapes
        tape_a.values, tape_b.values = rest[:n_values_a], rest[n_values_a:]
        mixing = ctx.mixing
        shared = factor_a.shape[0] == 1 and x.shape[0] != 1

        grad_result = grad_result.contiguous()
        grad_factor_b = _summed_outer(hidden, grad_result, shared)  # (batch or 1, rank, d_out)
        grad_hidden = _batched(grad_result, factor_b.transpose(1, 2))  # (batch, seq, rank)
        grad_x = _batched(grad_hidden, factor_a) if ctx.needs_input_grad[0] else None  # (batch, seq, d_in)
        grad_factor_a = _summed_outer(grad_hidden, x, shared)  # (batch or 1, rank, d_in)

        grad_weights = None
        grads = []
        for (stacked, _), tape, full, grad_factor, cut, leaves in zip(
            ctx.layout, (tape_a, tape_b), ctx.full, (grad_factor_a, grad_factor_b), (cut_a, cut_b), (leaves_a, leaves_b)
        ):
            grad_cut, grad_weights_side = _unmix(grad_factor, cut, weights, mixing)
            node_grads = tree_backward(_pad_to(grad_cut, full), tape)
            if mixing == "per-order":
                grad_leaves, grad_weights_side = _unmix_per_order(torch.stack(node_grads), leaves, weights)
                grads.append([grad_leaves])
            else:
                grads.append(_restack(node_grads, stacked))
            if grad_weights_side is not None:
                grad_weights = grad_weights_side if grad_weights is None else grad_weights + grad_weights_side

        grad_logits = None
        if ctx.logits is not None:
            shape, dtype = ctx.logits
            grad_rows = normalized_sigmoid_backward(grad_weights.reshape(routing[0].shape).to(routing[0].dtype), routing)
            grad_logits = torch.zeros(shape, dtype=grad_rows.dtype, device=grad_rows.device)
            grad_logits = grad_logits.index_add_(0, task_ids, grad_rows.reshape(len(task_ids), -1)).to(dtype)
            grad_weights = None
        return (grad_x, grad_weights, grad_logits, None, None, None, None, None, *grads[0], *grads[1])


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
    logits: torch.Tensor | None = None,
    task_ids: torch.Tensor | None = None,
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
        ``"weights"``: A is mixed per example by weights (batch, term). ``"sum"``: the terms are
        summed and the factors are shared by every example. ``"each"``: term ``b`` is example
        ``b`` (term == batch). ``"per-order"``: the nodes are leaves (order, term, rank, leaf),
        and each order's leaves are mixed per example by weights (batch, order, term) before
        they are multiplied (TensorPoly-II).
    weights
        Routing weights for mixing "weights" or "per-order", unless ``logits`` is given.
    normalize
        How the nodes are multiplied, as in :func:`~tensorpoly_tn.tlora.kron_leaves`: ``"none"``
        or ``"pairwise"`` (layer norm on every product that feeds a further one).
    logits, task_ids
        Router logits (task, split * term) and task ids (batch,), in place of ``weights``: the
        weights are then the normalised sigmoid of the rows (see
        :func:`~tensorpoly_tn.routing.normalized_sigmoid`), computed inside this node, and the
        gradient reaches ``logits``. The ids are not checked here; see :meth:`Router.sigmoid_logits`.
    """
    if mixing not in MIXINGS:
        raise ValueError(f"mixing must be one of {MIXINGS}, got {mixing!r}")
    routed = mixing in ("weights", "per-order")
    if routed != ((weights is not None) or (logits is not None)) or (weights is not None and logits is not None):
        raise ValueError(
            "mixing 'weights' and 'per-order' need either weights or logits with task_ids, and the other mixings "
            f"neither; got mixing {mixing!r}, weights {'given' if weights is not None else 'None'}, "
            f"logits {'given' if logits is not None else 'None'}"
        )
    if (logits is None) != (task_ids is None):
        raise ValueError(
            f"logits and task_ids must be given together; got logits {'given' if logits is not None else 'None'} "
            f"and task_ids {'given' if task_ids is not None else 'None'}"
        )
    stacked_a, stacked_b = isinstance(nodes_a, torch.Tensor), isinstance(nodes_b, torch.Tensor)
    if mixing == "per-order" and not (stacked_a and stacked_b):
        raise ValueError("mixing 'per-order' needs the leaves of each factor as one tensor (order, term, rank, leaf)")
    tensors_a = [nodes_a] if stacked_a else list(nodes_a)
    tensors_b = [nodes_b] if stacked_b else list(nodes_b)
    terms = nodes_a.shape[1] if stacked_a else nodes_a[0].shape[0]
    if mixing == "each" and terms != x.shape[0]:
        raise ValueError(f"mixing 'each' needs one term per example; got {terms} terms for a batch of {x.shape[0]}")
    layout = ((stacked_a, len(tensors_a)), (stacked_b, len(tensors_b)))
    return KroneckerUpdate.apply(x, weights, logits, task_ids, mixing, d_out, normalize, layout, *tensors_a, *tensors_b)
