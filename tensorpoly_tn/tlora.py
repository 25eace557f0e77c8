r"""TLoRA factors: a LoRA factor written as a sum of tensor products of small leaves.

A LoRA factor with ``width`` rows and ``rank`` columns is replaced by ``order`` leaf tensors of
length ``leaf = ceil(width ** (1 / order))``. Column ``j`` of the factor is

.. math::

    A_{:, j} = \Big[\sum_{k=1}^{K} a^{(1)}_{k j} \otimes a^{(2)}_{k j} \otimes \dots
    \otimes a^{(N)}_{k j}\Big]_{1:\mathrm{width}}

with ``N = order`` leaves per term, ``K = n_terms`` terms (the latent experts), leaf 1 the most
significant factor (the order of :func:`numpy.kron`), and the product cut to its first ``width``
entries. With ``normalize="pairwise"`` the product is built as a balanced tree of pairwise
products of neighbouring factors, and every product that feeds a further product is layer-normalised
(zero mean, unit variance over its entries, no affine parameters). The final product is not
normalised. With ``normalize="none"`` the tree is a plain Kronecker product.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["Normalize", "NORMALIZE_CHOICES", "leaf_length", "kron_leaves", "check_positive"]

Normalize = Literal["none", "pairwise"]
NORMALIZE_CHOICES: tuple[str, ...] = ("none", "pairwise")
LAYER_NORM_EPS = 1e-5


def check_positive(name: str, value: int) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def leaf_length(width: int, order: int) -> int:
    """Return the smallest leaf length ``L`` with ``L ** order >= width``.

    This is ``ceil(width ** (1 / order))`` computed in integers, so that floating-point
    rounding cannot give a leaf one too short (``ceil(64 ** (1/3))`` is 5 in floating point).
    """
    check_positive("width", width)
    check_positive("order", order)
    length = max(1, round(width ** (1.0 / order)))
    while length**order < width:
        length += 1
    while length > 1 and (length - 1) ** order >= width:
        length -= 1
    return length


def _outer_flat(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Kronecker product of two batches of vectors along their last dimension.

    ``left`` is (..., m) and ``right`` is (..., n); the result is (..., m * n) with ``left`` as
    the most significant factor, as in :func:`numpy.kron`.
    """
    product = left.unsqueeze(-1) * right.unsqueeze(-2)  # (..., m, n)
    return product.flatten(-2)  # (..., m * n)


def kron_leaves(leaves: torch.Tensor, width: int, normalize: Normalize = "none") -> torch.Tensor:
    """Multiply ``order`` leaves into one vector per leading index and cut it to ``width``.

    Parameters
    ----------
    leaves
        Tensor of shape (order, ..., leaf): the leaves, leaf 0 most significant. The leading
        dimensions after ``order`` (for example term and rank) are carried through.
    width
        Length of the result; at most ``leaf ** order``.
    normalize
        ``"none"`` for the plain Kronecker product, ``"pairwise"`` to layer-normalise every
        product of two neighbours that feeds a further product.

    Returns
    -------
    torch.Tensor
        Shape (..., width).
    """
    if normalize not in NORMALIZE_CHOICES:
        raise ValueError(f"normalize must be one of {NORMALIZE_CHOICES}, got {normalize!r}")
    order, leaf = leaves.shape[0], leaves.shape[-1]
    if width > leaf**order:
        raise ValueError(
            f"width {width} exceeds leaf ** order = {leaf}**{order} = {leaf**order}; "
            f"use leaves of length at least {leaf_length(width, order)}"
        )
    level = list(leaves.unbind(0))  # order tensors of shape (..., leaf)
    while len(level) > 1:
        is_root = len(level) == 2
        next_level = []
        for left, right in zip(level[0::2], level[1::2]):
            product = _outer_flat(left, right)  # (..., len(left) * len(right))
            if normalize == "pairwise" and not is_root:
                product = F.layer_norm(product, product.shape[-1:], eps=LAYER_NORM_EPS)
            next_level.append(product)
        if len(level) % 2 == 1:
            next_level.append(level[-1])  # the odd one out waits for the next level
        level = next_level
    return level[0][..., :width]  # (..., width)
