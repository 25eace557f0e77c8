"""Independent NumPy references for the adapter maths, written without the package's code."""

from __future__ import annotations

import math

import numpy as np


def numpy_layer_norm(vector: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    return (vector - vector.mean()) / math.sqrt(vector.var() + eps)


def numpy_tree_kron(leaves: list[np.ndarray], pairwise_norm: bool) -> np.ndarray:
    """Kronecker product of ``leaves`` (leaf 0 most significant) by a balanced pairwise tree.

    With ``pairwise_norm``, every product that is later multiplied again is layer-normalised.
    """
    level = [np.asarray(leaf, dtype=np.float64) for leaf in leaves]
    while len(level) > 1:
        is_root = len(level) == 2
        merged = []
        for index in range(0, len(level) - 1, 2):
            product = np.kron(level[index], level[index + 1])
            if pairwise_norm and not is_root:
                product = numpy_layer_norm(product)
            merged.append(product)
        if len(level) % 2:
            merged.append(level[-1])
        level = merged
    return level[0]


def numpy_factor(leaves: np.ndarray, weights: np.ndarray, width: int, pairwise_norm: bool) -> np.ndarray:
    """Materialise one routed factor from leaves (order, term, rank, leaf) and weights (term,).

    Returns the factor with shape (width, rank): column j is the weighted sum over terms of the
    Kronecker product of that term's leaves for rank j, cut to ``width``.
    """
    order, n_terms, rank, _ = leaves.shape
    factor = np.zeros((width, rank))
    for j in range(rank):
        for k in range(n_terms):
            product = numpy_tree_kron([leaves[n, k, j] for n in range(order)], pairwise_norm)
            factor[:, j] += weights[k] * product[:width]
    return factor
