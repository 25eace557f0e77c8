"""The opt_einsum backend that planned expressions run with: torch, with pairwise einsums as matmuls.

opt_einsum looks up ``einsum``, ``tensordot`` and ``transpose`` in the module named by its
``backend`` argument, so this module is that backend. A two-operand einsum is written as one
batched matrix product: each operand is permuted to (batch, free, contracted) or
(batch, contracted, free) and reshaped, which is what a hand-written ``bmm`` does. Other
einsums go to :func:`torch.einsum`.
"""

from __future__ import annotations

import math

import torch

__all__ = ["einsum", "tensordot", "transpose"]


def transpose(tensor: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    """Permute the axes of ``tensor``."""
    return tensor.permute(tuple(axes))


def tensordot(left: torch.Tensor, right: torch.Tensor, axes) -> torch.Tensor:
    """Contract ``axes`` of ``left`` and ``right`` as :func:`torch.tensordot` does."""
    return torch.tensordot(left, right, dims=axes)


def _pair_as_matmul(equation: str, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    inputs, output = equation.split("->")
    left_letters, right_letters = inputs.split(",")
    # Letters on one operand only and not in the output are summed out first.
    for letters, is_left in ((left_letters, True), (right_letters, False)):
        other = right_letters if is_left else left_letters
        lonely = [axis for axis, name in enumerate(letters) if name not in other and name not in output]
        if lonely:
            tensor = (left if is_left else right).sum(dim=lonely)
            kept = "".join(name for name in letters if name in other or name in output)
            if is_left:
                left, left_letters = tensor, kept
            else:
                right, right_letters = tensor, kept
    batch = [name for name in output if name in left_letters and name in right_letters]
    summed = [name for name in left_letters if name in right_letters and name not in output]
    left_free = [name for name in left_letters if name not in right_letters]
    right_free = [name for name in right_letters if name not in left_letters]
    sizes = dict(zip(left_letters, left.shape)) | dict(zip(right_letters, right.shape))

    def size_of(names: list[str]) -> int:
        return math.prod(sizes[name] for name in names)

    # (batch, left_free, summed) @ (batch, summed, right_free) -> (batch, left_free, right_free)
    left_matrix = left.permute(tuple(left_letters.index(n) for n in batch + left_free + summed))
    left_matrix = left_matrix.reshape(size_of(batch), size_of(left_free), size_of(summed))
    right_matrix = right.permute(tuple(right_letters.index(n) for n in batch + summed + right_free))
    right_matrix = right_matrix.reshape(size_of(batch), size_of(summed), size_of(right_free))
    product = torch.matmul(left_matrix, right_matrix)
    names = batch + left_free + right_free
    product = product.reshape([sizes[name] for name in names])
    return product.permute(tuple(names.index(name) for name in output))


def einsum(equation: str, *operands: torch.Tensor) -> torch.Tensor:
    """Evaluate ``equation``; two operands without repeated letters become one batched matmul."""
    if len(operands) == 2 and "->" in equation:
        inputs = equation.split("->")[0].split(",")
        if all(len(set(letters)) == len(letters) for letters in inputs):
            return _pair_as_matmul(equation, *operands)
    return torch.einsum(equation, *operands)
