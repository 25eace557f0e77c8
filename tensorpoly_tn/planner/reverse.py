r"""Planned gradients: the backward pass of a plan as planned steps of its own.

The gradient of a pairwise contraction is a pairwise contraction. For a step
``out[O] = sum L[L] R[R]`` (einsum letters, none repeated within an operand),

.. math::

    \frac{\partial\,\mathrm{loss}}{\partial L} = \mathrm{einsum}(O, R \to L),

where the letters of ``L`` that appear neither in ``R`` nor in ``O`` were summed out by the step,
so the gradient is broadcast along them. The same holds for ``R`` with the operands swapped, and
for a one-operand step (a sum or a permutation) the gradient is the output gradient permuted
back and broadcast. Each gradient step is a :class:`~.backend.PairStep` worked out at plan time.

:class:`PlannedContraction` runs a whole plan as one ``torch.autograd.Function``. Its forward
pass records each step on a tape, and its backward pass walks the tape in reverse with the
prepared gradient steps. Autograd then records one node per call instead of one per permute,
reshape, pad and product. At the widths of a small model those nodes cost more than the
arithmetic. A plan with a step that has no planned gradient (repeated letters in an operand,
three operands in one step) runs under plain autograd instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .backend import PairStep, pair_step

if TYPE_CHECKING:
    from .core import PlanReport

__all__ = [
    "OperandGradient", "step_gradients", "needs_hand_gradient", "unfold_axis", "fold_axes", "Tape", "run_stages",
    "PlannedContraction",
]


@dataclass(frozen=True)
class OperandGradient:
    """The rule that computes one operand's gradient from the step's output gradient.

    With ``step`` set, ``step(grad_output, other)`` contracts the output gradient with the other
    operand (the one at position ``other``). Without it, the output gradient is permuted by
    ``order``. The result carries the operand's letters except those summed on this operand
    alone. It is then reshaped to ``kept_shape`` (ones where those letters were) and expanded to
    ``shape``; ``None`` skips either.
    """

    step: PairStep | None
    other: int | None
    order: tuple[int, ...] | None
    kept_shape: tuple[int, ...] | None
    shape: tuple[int, ...] | None

    def __call__(self, grad_output: torch.Tensor, operands: list[torch.Tensor | None]) -> torch.Tensor:
        if self.step is not None:
            grad = self.step(grad_output, operands[self.other])
        else:
            grad = grad_output if self.order is None else grad_output.permute(self.order)
        if self.kept_shape is not None:
            grad = grad.reshape(self.kept_shape).expand(self.shape)
        return grad


def _broadcast_back(letters: str, kept_letters: str, sizes: dict[str, int]) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """Return the reshape and expand that take a gradient over ``kept_letters`` back to all of ``letters``."""
    if kept_letters == letters:
        return None, None
    kept_shape = tuple(sizes[letter] if letter in kept_letters else 1 for letter in letters)
    return kept_shape, tuple(sizes[letter] for letter in letters)


def step_gradients(einsum_str: str, sizes: dict[str, int]) -> tuple[OperandGradient, ...] | None:
    """Work out the gradient of each operand of one contraction step, or ``None`` if not supported.

    ``einsum_str`` is the step's equation (``"L,R->O"`` or ``"L->O"``) and ``sizes`` maps its
    letters to sizes. Steps with a letter repeated within an operand or in the output, and steps
    with more than two operands, return ``None``.
    """
    inputs_part, output = einsum_str.split("->")
    inputs = inputs_part.split(",")
    if len(inputs) > 2 or any(len(set(letters)) != len(letters) for letters in (*inputs, output)):
        return None
    gradients = []
    for position, letters in enumerate(inputs):
        others = [other for index, other in enumerate(inputs) if index != position]
        seen_elsewhere = set(output).union(*others)
        kept_letters = "".join(letter for letter in letters if letter in seen_elsewhere)
        kept_shape, shape = _broadcast_back(letters, kept_letters, sizes)
        if others:
            other = others[0]
            shapes = (tuple(sizes[letter] for letter in output), tuple(sizes[letter] for letter in other))
            step = pair_step(f"{output},{other}->{kept_letters}", *shapes)
            gradients.append(OperandGradient(step, 1 - position, None, kept_shape, shape))
        else:
            order = tuple(output.index(letter) for letter in kept_letters)
            order = None if order == tuple(range(len(order))) else order
            gradients.append(OperandGradient(None, None, order, kept_shape, shape))
    return tuple(gradients)


def needs_hand_gradient(tensors: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> bool:
    """Return whether a call on ``tensors`` should run with a hand-written backward pass.

    That is when gradients are enabled, some tensor requires one, and autocast is off on the
    first tensor's device. Under autocast the steps run in a lower precision than the tensors a
    hand-written backward pass saves, so such calls are left to autograd, which casts each
    step's gradients.
    """
    return (
        torch.is_grad_enabled()
        and any(tensor.requires_grad for tensor in tensors)
        and not torch.is_autocast_enabled(tensors[0].device.type)
    )


def unfold_axis(tensor: torch.Tensor, axis: int, parts_sizes: tuple[int, ...]) -> torch.Tensor:
    """Pad axis ``axis`` with zeros to the product of ``parts_sizes`` and split it into those axes."""
    missing = math.prod(parts_sizes) - tensor.shape[axis]
    if missing:
        padding = [0, 0] * (tensor.dim() - 1 - axis) + [0, missing]
        tensor = F.pad(tensor, padding)  # the fused axis grows to the product of the parts
    return tensor.reshape(*tensor.shape[:axis], *parts_sizes, *tensor.shape[axis + 1 :])


def fold_axes(tensor: torch.Tensor, axis: int, n_parts: int, size: int) -> torch.Tensor:
    """Merge ``n_parts`` axes starting at ``axis`` into one and keep its first ``size`` entries."""
    merged = tensor.flatten(axis, axis + n_parts - 1)  # the parts become one axis
    return merged if merged.shape[axis] == size else merged.narrow(axis, 0, size)


# Kinds of tape records. Unfolding and folding are each other's gradients.
_UNFOLD, _FOLD, _STEP = "unfold", "fold", "step"


class Tape:
    """The values of one planned call and the records its backward pass replays.

    ``values`` contains the call's tensors (the inputs, then every intermediate) and ``needs_grad``
    whether each depends on an input that requires a gradient. A record is
    ``(kind, input ids, output id, data)`` and is kept_letters only when its output needs a gradient.
    """

    def __init__(self, tensors: list[torch.Tensor], needs_grad: list[bool]) -> None:
        self.values: list[torch.Tensor | None] = list(tensors)
        self.needs_grad = list(needs_grad)
        self.records: list[tuple[str, tuple[int, ...], int, object]] = []
        self.result_id: int | None = None

    def add(self, value: torch.Tensor, kind: str, inputs: tuple[int, ...], data: object) -> int:
        """Store ``value`` as the result of a ``kind`` record on ``inputs``; return its id."""
        self.values.append(value)
        needs = any(self.needs_grad[index] for index in inputs)
        self.needs_grad.append(needs)
        identifier = len(self.values) - 1
        if needs:
            self.records.append((kind, inputs, identifier, data))
        return identifier

    def release_unused(self, n_inputs: int) -> None:
        """Drop the intermediates that no gradient step reads, so that they are freed after forward."""
        read = set()
        for kind, inputs, _, _ in self.records:
            if kind == _STEP and len(inputs) == 2:
                left, right = inputs
                if self.needs_grad[left]:
                    read.add(right)
                if self.needs_grad[right]:
                    read.add(left)
        for identifier in range(n_inputs, len(self.values)):
            if identifier not in read:
                self.values[identifier] = None


def run_stages(report: PlanReport, tensors: list[torch.Tensor], tape: Tape | None = None) -> torch.Tensor:
    """Run every stage of ``report`` on ``tensors`` (one per node), recording on ``tape`` when given."""
    values = list(tensors)  # the nodes in order, then one result per stage
    ids = list(range(len(tensors))) if tape is not None else None
    for stage in report.stages:
        operands = [values[slot] for slot in stage.slots]
        operand_ids = [ids[slot] for slot in stage.slots] if tape is not None else None
        for position, axis, parts in stage.unfold_axes:
            size = operands[position].shape[axis]
            operands[position] = unfold_axis(operands[position], axis, parts)
            if tape is not None:
                operand_ids[position] = tape.add(operands[position], _UNFOLD, (operand_ids[position],), (axis, len(parts), size))
        for (positions, step), gradients in zip(stage.steps, stage.gradients):
            # opt_einsum's contraction list: pop these positions in order, append the result.
            arguments = [operands.pop(position) for position in positions]
            operands.append(step(*arguments))
            if tape is not None:
                argument_ids = tuple(operand_ids.pop(position) for position in positions)
                operand_ids.append(tape.add(operands[-1], _STEP, argument_ids, gradients))
        result, result_id = operands[0], operand_ids[0] if tape is not None else None
        for axis, n_parts, size in stage.fold_axes:
            parts = tuple(result.shape[axis : axis + n_parts])
            result = fold_axes(result, axis, n_parts, size)
            if tape is not None:
                result_id = tape.add(result, _FOLD, (result_id,), (axis, parts))
        if stage.contiguous:
            result = result.contiguous()  # the gradient passes through unchanged
            if tape is not None:
                tape.values[result_id] = result
        values.append(result)
        if tape is not None:
            ids.append(result_id)
    if tape is not None:
        tape.result_id = ids[-1]
    return values[-1]


def _accumulate(grads: list[torch.Tensor | None], identifier: int, grad: torch.Tensor) -> None:
    grads[identifier] = grad if grads[identifier] is None else grads[identifier] + grad


class PlannedContraction(torch.autograd.Function):
    """One planned call as a single autograd node whose backward pass runs the planned gradient steps.

    ``PlannedContraction.apply(report, *tensors)`` returns the same tensor as running the plan's
    stages under autograd. It supports first derivatives only (``once_differentiable``).
    """

    @staticmethod
    def forward(ctx, report: PlanReport, *tensors: torch.Tensor) -> torch.Tensor:
        needs_grad = list(ctx.needs_input_grad[1:])
        tape = Tape(list(tensors), needs_grad)
        result = run_stages(report, list(tensors), tape)
        tape.release_unused(len(tensors))
        ctx.tape = tape
        ctx.n_inputs = len(tensors)
        return result

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        tape: Tape = ctx.tape
        grads: list[torch.Tensor | None] = [None] * len(tape.values)
        grads[tape.result_id] = grad_output
        for kind, inputs, output, data in reversed(tape.records):
            grad = grads[output]
            grads[output] = None
            if grad is None:
                continue
            if kind == _UNFOLD:
                axis, n_parts, size = data
                _accumulate(grads, inputs[0], fold_axes(grad, axis, n_parts, size))
            elif kind == _FOLD:
                axis, parts = data
                _accumulate(grads, inputs[0], unfold_axis(grad, axis, parts))
            else:
                operands = [tape.values[identifier] for identifier in inputs]
                for identifier, gradient in zip(inputs, data):
                    if tape.needs_grad[identifier]:
                        _accumulate(grads, identifier, gradient(grad, operands))
        return (None, *grads[: ctx.n_inputs])
