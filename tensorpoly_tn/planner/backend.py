"""The opt_einsum backend that planned expressions run with: torch, with pairwise einsums as matmuls.

opt_einsum looks up ``einsum``, ``tensordot`` and ``transpose`` in the module named by its
``backend`` argument, so this module is that backend. A two-operand einsum is written as one
batched matrix product: each operand is permuted to (batch, free, contracted) or
(batch, contracted, free) and reshaped, which is what a hand-written ``bmm`` does. Other
einsums go to :func:`torch.einsum`.

The layout of each pairwise product depends only on the equation and the operand shapes, so it is
worked out once by :func:`pair_step` and cached. A matrix that BLAS cannot read with strides (no
unit stride on either of its last two axes) is copied to contiguous memory first. The reason is
speed: with torch 2.13 on a 2-core x86 CPU, such a strided ``bmm`` at (8, 256, 64) @ (8, 64, 4)
took about 30 times as long as the copy plus a contiguous ``bmm``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import torch

__all__ = ["einsum", "tensordot", "transpose", "PairStep", "pair_step", "blas_ready"]


def transpose(tensor: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    """Permute the axes of ``tensor``."""
    return tensor.permute(tuple(axes))


def tensordot(left: torch.Tensor, right: torch.Tensor, axes) -> torch.Tensor:
    """Contract ``axes`` of ``left`` and ``right`` as :func:`torch.tensordot` does."""
    return torch.tensordot(left, right, dims=axes)


def blas_ready(matrix: torch.Tensor) -> bool:
    """Return whether each matrix of the (batch, rows, columns) ``matrix`` is row- or column-major."""
    rows, columns = matrix.shape[-2:]
    row_stride, column_stride = matrix.stride()[-2:]
    row_major = (column_stride == 1 or columns == 1) and row_stride >= max(columns, 1)
    column_major = (row_stride == 1 or rows == 1) and column_stride >= max(rows, 1)
    return row_major or column_major


@dataclass(frozen=True)
class PairStep:
    """One pairwise einsum as ``bmm``: the sums, permutations and reshapes it needs, fixed by the shapes.

    ``left_sum`` and ``right_sum`` are axes summed out first (on one operand only, not in the
    output). The operands are then permuted by ``left_order`` and ``right_order`` and reshaped to
    ``left_matrix`` (batch, left free, summed) and ``right_matrix`` (batch, summed, right free).
    The product is reshaped to ``product_shape`` and permuted by ``output_order``. With ``swap``
    the operands trade places first, so that the product comes out in the output's order. A permutation
    that changes nothing, or a reshape to the shape the tensor already has, is ``None`` and skipped:
    each skipped call saves about a microsecond, which adds up at the shapes of a small model.
    """

    left_sum: tuple[int, ...]
    right_sum: tuple[int, ...]
    left_order: tuple[int, ...] | None
    left_matrix: tuple[int, int, int] | None
    right_order: tuple[int, ...] | None
    right_matrix: tuple[int, int, int] | None
    product_shape: tuple[int, ...] | None
    output_order: tuple[int, ...] | None
    summed_size: int
    swap: bool = False

    def __call__(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        if self.swap:
            left, right = right, left
        if self.left_sum:
            left = left.sum(dim=self.left_sum)
        if self.right_sum:
            right = right.sum(dim=self.right_sum)
        if self.left_order is not None:
            left = left.permute(self.left_order)
        if self.left_matrix is not None:
            left = left.reshape(self.left_matrix)  # (batch, left free, summed)
        if self.right_order is not None:
            right = right.permute(self.right_order)
        if self.right_matrix is not None:
            right = right.reshape(self.right_matrix)  # (batch, summed, right free)
        if self.summed_size == 1:
            # Nothing is summed: an outer product, which a broadcast multiply does without bmm's overhead.
            product = left * right  # (batch, left free, right free)
        else:
            if not blas_ready(left):
                left = left.contiguous()
            if not blas_ready(right):
                right = right.contiguous()
            product = torch.bmm(left, right)  # (batch, left free, right free)
        if self.product_shape is not None:
            product = product.reshape(self.product_shape)
        if self.output_order is not None:
            product = product.permute(self.output_order)
        return product


def _unless_identity(order: tuple[int, ...]) -> tuple[int, ...] | None:
    return None if order == tuple(range(len(order))) else order


def _unless_same(shape: tuple[int, ...], target: tuple[int, ...]) -> tuple[int, ...] | None:
    return None if shape == target else target


@lru_cache(maxsize=4096)
def pair_step(equation: str, left_shape: tuple[int, ...], right_shape: tuple[int, ...]) -> PairStep:
    """Work out the :class:`PairStep` of a two-operand ``equation`` without repeated letters.

    The operand whose free letters come first in the output becomes the left matrix, so that the
    product is laid out as the output and the next step or the caller reads it without a copy.
    """
    inputs, output = equation.split("->")
    left_letters, right_letters = inputs.split(",")
    left_first = [output.index(name) for name in left_letters if name in output and name not in right_letters]
    right_first = [output.index(name) for name in right_letters if name in output and name not in left_letters]
    if left_first and right_first and min(right_first) < min(left_first):
        swapped = _pair_step(f"{right_letters},{left_letters}->{output}", right_shape, left_shape)
        return dataclasses.replace(swapped, swap=True)
    return _pair_step(equation, left_shape, right_shape)


def _pair_step(equation: str, left_shape: tuple[int, ...], right_shape: tuple[int, ...]) -> PairStep:
    inputs, output = equation.split("->")
    left_letters, right_letters = inputs.split(",")
    sizes = dict(zip(left_letters, left_shape)) | dict(zip(right_letters, right_shape))
    # Letters on one operand only and not in the output are summed out first.
    left_sum = tuple(axis for axis, name in enumerate(left_letters) if name not in right_letters and name not in output)
    right_sum = tuple(axis for axis, name in enumerate(right_letters) if name not in left_letters and name not in output)
    left_kept = "".join(name for name in left_letters if name in right_letters or name in output)
    right_kept = "".join(name for name in right_letters if name in left_letters or name in output)

    batch = [name for name in output if name in left_kept and name in right_kept]
    summed = [name for name in left_kept if name in right_kept and name not in output]
    left_free = [name for name in left_kept if name not in right_kept]
    right_free = [name for name in right_kept if name not in left_kept]

    def size_of(names: list[str]) -> int:
        return math.prod(sizes[name] for name in names)

    def shape_of(names) -> tuple[int, ...]:
        return tuple(sizes[name] for name in names)

    left_names, right_names = batch + left_free + summed, batch + summed + right_free
    left_matrix = (size_of(batch), size_of(left_free), size_of(summed))
    right_matrix = (size_of(batch), size_of(summed), size_of(right_free))
    names = batch + left_free + right_free
    product_matrix = (left_matrix[0], left_matrix[1], right_matrix[2])
    return PairStep(
        left_sum,
        right_sum,
        _unless_identity(tuple(left_kept.index(name) for name in left_names)),
        _unless_same(shape_of(left_names), left_matrix),
        _unless_identity(tuple(right_kept.index(name) for name in right_names)),
        _unless_same(shape_of(right_names), right_matrix),
        _unless_same(product_matrix, shape_of(names)),
        _unless_identity(tuple(names.index(name) for name in output)),
        size_of(summed),
    )


def einsum(equation: str, *operands: torch.Tensor) -> torch.Tensor:
    """Evaluate ``equation``. Two operands without repeated letters become one :class:`PairStep`."""
    if len(operands) == 2 and "->" in equation:
        inputs = equation.split("->")[0].split(",")
        if all(len(set(letters)) == len(letters) for letters in inputs):
            left, right = operands
            return pair_step(equation, tuple(left.shape), tuple(right.shape))(left, right)
    return torch.einsum(equation, *operands)
