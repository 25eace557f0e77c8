r"""The estimated cost that candidate plans are ranked by: FLOPs, memory traffic and per-call overhead.

FLOPs alone rank plans well when every product is large. At the widths of a small model
(d_in 64, rank 4) the per-token products are thin, so their time goes to reading and writing
memory and, for the small stage-1 einsums, to the fixed overhead of each torch call. The cost
of a stage is therefore

.. math::

    \mathrm{cost} = \mathrm{FLOPs} + w_\mathrm{mem} \cdot \mathrm{elements} + w_\mathrm{call} \cdot \mathrm{calls},

where ``elements`` counts every element read and written by each pairwise product (both operands
and the result), by padding an input to its unfolded size and by folding a result, and ``calls``
counts the torch operations those steps issue.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["MEMORY_WEIGHT", "CALL_WEIGHT", "StageCost", "stage_cost", "total_cost"]

#: FLOP-equivalents per element read or written. An estimate: on a 2-core x86 CPU with torch 2.13,
#: thin float32 products run at about 20 GFLOP/s while memory moves about 1.3 elements per ns.
MEMORY_WEIGHT = 16.0
#: FLOP-equivalents per torch call (Python, dispatch and kernel launch, about 10 us on that CPU).
CALL_WEIGHT = 2.0e5


@dataclass(frozen=True)
class StageCost:
    """The cost terms of one stage: FLOPs, elements read and written, and torch calls."""

    flops: int
    memory: int
    calls: int

    @property
    def total(self) -> float:
        """The estimated cost: ``flops + MEMORY_WEIGHT * memory + CALL_WEIGHT * calls``."""
        return self.flops + MEMORY_WEIGHT * self.memory + CALL_WEIGHT * self.calls


def _size(letters: str, size_dict: dict[str, int]) -> int:
    return math.prod(size_dict[letter] for letter in letters)


def stage_cost(
    contraction_list: Sequence,
    size_dict: dict[str, int],
    flops: int,
    padded: Sequence[int],
    folded_size: int,
    copied_size: int = 0,
) -> StageCost:
    """Count the cost terms of a stage.

    Parameters
    ----------
    contraction_list
        opt_einsum's contraction list for the stage (``PathInfo.contraction_list``).
    size_dict
        Letter to size, as in ``PathInfo.size_dict``.
    flops
        The stage's FLOPs.
    padded
        Size of each operand padded before its unfold (operands whose unfold is a reshape only
        are not listed).
    folded_size
        Size of the folded output, or 0 when the fold is a view.
    copied_size
        Size of the output when the stage copies it to contiguous memory, else 0.
    """
    memory = 0
    calls = 0
    for _, _, einsum_str, _, _ in contraction_list:
        inputs, result = einsum_str.split("->")
        memory += sum(_size(letters, size_dict) for letters in inputs.split(",")) + _size(result, size_dict)
        calls += 1
    memory += 2 * (sum(padded) + folded_size + copied_size)  # each read once and written once
    calls += len(padded)
    if folded_size:
        calls += 1
    if copied_size:
        calls += 1
    return StageCost(flops, memory, calls)


def total_cost(stages: Iterable[StageCost]) -> float:
    """Return the estimated cost of a plan: the sum of its stages' :attr:`StageCost.total`."""
    return sum(stage.total for stage in stages)
