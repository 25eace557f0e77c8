r"""The networks of LoRA, TLoRA and TensorPoly-I, and their planned updates ``x A B``.

A TLoRA factor column is a sum over terms of Kronecker products of leaves (see
:mod:`tensorpoly_tn.tlora`). With ``normalize="none"`` every leaf is a node of the network. With
``normalize="pairwise"`` the layer norms are non-linear, so the planner cannot contract through
them: the two children of the root product, each a normalised product of its leaves, are built
in PyTorch once per call and enter the network as parameter nodes,

.. math::

    A_{k r} = \big[\mathrm{left}_{k r} \otimes \mathrm{right}_{k r}\big]_{1:d_\mathrm{in}},

where the left child covers the first ``2 ** (ceil(log2 N) - 1)`` leaves, which is how the
balanced tree of :func:`~tensorpoly_tn.tlora.kron_leaves` splits them. Each factor's legs are
fused into ``d_in`` (or ``d_out``) by :meth:`~tensorpoly_tn.network.TensorNetwork.fuse`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from ..network import TensorNetwork
from ..tlora import LAYER_NORM_EPS, Normalize, kron_leaves
from .plan import Plan, plan

__all__ = ["lora_network", "tlora_network", "tlora_nodes", "lora_update", "tlora_update"]

_SIDES = {"a": "d_in", "b": "d_out"}


def _split_point(order: int) -> int:
    """Number of leaves in the left child of the root product (the largest power of two below ``order``)."""
    return 2 ** (math.ceil(math.log2(order)) - 1)


def _leg_lengths(order: int, leaf: int, normalize: Normalize) -> list[int]:
    if normalize == "none" or order == 1:
        return [leaf] * order
    split = _split_point(order)
    return [leaf**split, leaf ** (order - split)]


def tlora_nodes(leaves: torch.Tensor, normalize: Normalize) -> list[torch.Tensor]:
    """Return the network nodes of one TLoRA factor, each (term, rank, leg).

    Parameters
    ----------
    leaves
        Shape (order, term, rank, leaf).
    normalize
        ``"none"``: the leaves themselves. ``"pairwise"``: the two children of the root product,
        each a layer-normalised product of its leaves (a single leaf is not normalised).
    """
    order, leaf = leaves.shape[0], leaves.shape[-1]
    if normalize == "none" or order == 1:
        return list(leaves.unbind(0))
    split = _split_point(order)
    children = []
    for part in (leaves[:split], leaves[split:]):
        if part.shape[0] == 1:
            children.append(part[0])  # (term, rank, leaf)
            continue
        product = kron_leaves(part, leaf ** part.shape[0], normalize)  # (term, rank, leaf ** len(part))
        children.append(F.layer_norm(product, product.shape[-1:], eps=LAYER_NORM_EPS))
    return children


def tlora_network(
    batch: int, seq: int, d_in: int, d_out: int, rank: int, n_terms: int, order: int,
    leaf_in: int, leaf_out: int, normalize: Normalize = "none", routed: bool = True,
) -> TensorNetwork:
    """Build the network of a TLoRA update (``routed=False``) or a TensorPoly-I update.

    Nodes, in order: ``x`` (batch, seq, d_in); per side ``a`` and ``b`` the factor nodes
    ``a_0, a_1, ...`` (term_a, rank, d_in_j) and, when routed, ``w_a`` (batch, term_a);
    likewise for ``b`` with d_out. The output is (batch, seq, d_out).
    """
    net = TensorNetwork(hyper_indices=("batch", "rank", "term_a", "term_b"))
    net.add("x", ("batch", "seq", "d_in"), (batch, seq, d_in), role="input")
    for side, leaf in (("a", leaf_in), ("b", leaf_out)):
        width = _SIDES[side]
        legs = _leg_lengths(order, leaf, normalize)
        for position, length in enumerate(legs):
            net.add(f"{side}_{position}", (f"term_{side}", "rank", f"{width}_{position}"),
                    (n_terms, rank, length), group=side.upper())
        if routed:
            net.add(f"w_{side}", ("batch", f"term_{side}"), (batch, n_terms), role="routing", group=side.upper())
        net.fuse(width, [f"{width}_{position}" for position in range(len(legs))], d_in if side == "a" else d_out)
    return net


def lora_network(batch: int, seq: int, d_in: int, d_out: int, rank: int) -> TensorNetwork:
    """Build the network of LoRA's update: ``x`` (batch, seq, d_in), ``A`` (d_in, rank), ``B`` (rank, d_out)."""
    net = TensorNetwork()
    net.add("x", ("batch", "seq", "d_in"), (batch, seq, d_in), role="input")
    net.add("A", ("d_in", "rank"), (d_in, rank), group="A")
    return net.add("B", ("rank", "d_out"), (rank, d_out), group="B")


_OUTPUT = ("batch", "seq", "d_out")


@lru_cache(maxsize=64)
def _lora_plan() -> Plan:
    return plan(lora_network(1, 1, 1, 1, 1), _OUTPUT)


@lru_cache(maxsize=256)
def _tlora_plan(d_in: int, d_out: int, order: int, leaf_in: int, leaf_out: int, normalize: str, routed: bool, strategy: str) -> Plan:
    network = tlora_network(1, 1, d_in, d_out, 1, 1, order, leaf_in, leaf_out, normalize, routed)  # sizes set per call
    return plan(network, _OUTPUT, strategy=strategy)


def lora_update(x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor) -> torch.Tensor:
    """Return ``x A B`` planned: x (batch, seq, d_in), A (d_in, rank), B (rank, d_out) -> (batch, seq, d_out)."""
    return _lora_plan()(x, lora_a, lora_b)


def tlora_update(
    x: torch.Tensor,
    leaves_a: torch.Tensor,
    leaves_b: torch.Tensor,
    d_out: int,
    normalize: Normalize,
    weights: torch.Tensor | None = None,
    strategy: str = "auto",
) -> torch.Tensor:
    """Return the planned TLoRA (``weights=None``) or TensorPoly-I update ``x A B``.

    Parameters
    ----------
    x
        Shape (batch, seq, d_in).
    leaves_a, leaves_b
        Shapes (order, term, rank, leaf_in) and (order, term, rank, leaf_out).
    d_out
        Width of the output; ``d_in`` is read from ``x``.
    normalize
        ``"none"`` or ``"pairwise"``, as in :func:`~tensorpoly_tn.tlora.kron_leaves`.
    weights
        Routing weights (batch, term), used for both factors; ``None`` sums the terms.
    strategy
        ``"auto"`` or a strategy name of :data:`~tensorpoly_tn.planner.STRATEGIES`.

    Returns
    -------
    torch.Tensor
        Shape (batch, seq, d_out).
    """
    order = leaves_a.shape[0]
    routed = weights is not None
    contraction = _tlora_plan(x.shape[-1], d_out, order, leaves_a.shape[-1], leaves_b.shape[-1], normalize, routed, strategy)
    nodes_a, nodes_b = tlora_nodes(leaves_a, normalize), tlora_nodes(leaves_b, normalize)
    routing_a = [weights] if routed else []
    routing_b = [weights] if routed else []
    return contraction(x, *nodes_a, *routing_a, *nodes_b, *routing_b)
