"""Plan a :class:`~tensorpoly_tn.network.TensorNetwork` once per set of shapes and run it on torch tensors.

A plan has two stages. Stage 1 contracts groups of parameter and routing nodes (no per-token
index), once per call. Stage 2 contracts the inputs with the group results and the other nodes.
Each candidate strategy (see :mod:`tensorpoly_tn.planner.strategies`) gets an opt_einsum path
per stage from :func:`opt_einsum.contract_path`. The candidates are ranked by an estimated cost
(see :mod:`tensorpoly_tn.planner.costs`) that adds memory traffic and a per-call overhead to the
FLOPs, because at small shapes a plan with fewer FLOPs can still be slower.
Each stage keeps opt_einsum's contraction list as a sequence of prepared ``bmm`` steps, so a warm
call parses no equation. Built plans are cached by the shapes, dtypes and devices of the call.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import opt_einsum
import torch

from ..indices import equation
from ..network import TensorNetwork
from .backend import pair_step
from .costs import StageCost, stage_cost, total_cost
from .reverse import OperandGradient, step_gradients
from .strategies import STRATEGIES, candidate_groupings

__all__ = ["Stage", "PlanReport", "build_stages"]

logger = logging.getLogger(__name__)

#: One step of a stage: positions popped from the operand list (opt_einsum's order), and the function on them.
Step = tuple[tuple[int, ...], Callable[..., torch.Tensor]]


@dataclass(frozen=True)
class Stage:
    """One einsum of a plan: which operands it takes, its output indices and its prepared steps.

    ``operands`` names network nodes or earlier stage results (``"stage:<k>"``) and ``slots`` gives
    their positions in the call's list of tensors (the nodes in order, then the stage results).
    ``unfold`` lists (operand position, fused index) pairs padded and split into their parts
    before the einsum, and ``fold`` the fused output indices whose parts are merged and cut to
    size after it. ``unfold_axes`` and ``fold_axes`` are the same, worked out for these shapes.
    A stage with ``contiguous`` copies its result to contiguous memory (a stage-1 result, so that
    the per-token products and their gradients read plain row-major matrices). ``gradients`` holds,
    per step, the planned gradient of each operand (see :mod:`~tensorpoly_tn.planner.reverse`),
    or ``None`` for a step that only autograd can differentiate.
    """

    operands: tuple[str, ...]
    operand_indices: tuple[tuple[str, ...], ...]  # as the operands arrive, fused indices whole
    output: tuple[str, ...]
    equation: str
    path: tuple[tuple[int, ...], ...]
    flops: int
    largest_intermediate: int
    cost: StageCost
    unfold: tuple[tuple[int, str], ...]
    fold: tuple[str, ...]
    slots: tuple[int, ...]
    unfold_axes: tuple[tuple[int, int, tuple[int, ...]], ...]  # (operand, axis, part sizes), right to left
    fold_axes: tuple[tuple[int, int, int], ...]  # (axis, number of parts, size), right to left
    steps: tuple[Step, ...]
    gradients: tuple[tuple[OperandGradient, ...] | None, ...]
    contiguous: bool = False


@dataclass(frozen=True)
class PlanReport:
    """The plan for one set of shapes: chosen strategy, stages, FLOPs and each candidate's cost.

    ``candidates`` maps each candidate strategy to its FLOPs and ``candidate_costs`` to the
    estimated cost it was ranked by; ``cost`` is the chosen one's.
    """

    strategy: str
    stages: tuple[Stage, ...]
    flops: int
    largest_intermediate: int
    candidates: dict[str, int]
    candidate_costs: dict[str, float]
    cost: float

    @property
    def path(self) -> tuple[tuple[tuple[int, ...], ...], ...]:
        """The opt_einsum path of each stage."""
        return tuple(stage.path for stage in self.stages)

    @property
    def planned_backward(self) -> bool:
        """Whether every step has a planned gradient, so that a call can run as one autograd node."""
        return all(gradients is not None for stage in self.stages for gradients in stage.gradients)

    def describe(self) -> str:
        """Return a readable multi-line summary."""
        lines = [
            f"strategy {self.strategy}: cost {self.cost:.3e}, {self.flops:.3e} FLOPs, "
            f"largest intermediate {self.largest_intermediate:.3e}"
        ]
        for position, stage in enumerate(self.stages):
            lines.append(
                f"  stage {position}: {stage.equation}  path {list(stage.path)}  {stage.flops:.3e} FLOPs, "
                f"{stage.cost.memory:.3e} elements moved, {stage.cost.calls} calls"
            )
        others = ", ".join(
            f"{name} {self.candidate_costs[name]:.3e} ({flops:.3e} FLOPs)" for name, flops in self.candidates.items()
        )
        lines.append(f"  candidates, cost (FLOPs): {others}")
        return "\n".join(lines)


def _fold(network: TensorNetwork, indices: tuple[str, ...], blocked: set[str]) -> tuple[str, ...]:
    """Replace the parts of each fused index by the index when all parts are present and none is blocked."""
    folded = list(indices)
    for name, (parts, _) in network.fused.items():
        if all(part in folded for part in parts) and not blocked.intersection(parts):
            position = min(folded.index(part) for part in parts)
            folded = [index for index in folded if index not in parts]
            folded.insert(position, name)
    return tuple(folded)


def _layout(network: TensorNetwork, indices: tuple[str, ...], output: tuple[str, ...]) -> tuple[str, ...]:
    """Order a stage-1 result's indices as the per-token products read them, like ``bmm`` operands.

    Indices on an input and in the output come first (batch), then the rest (``rank``), then those
    contracted with an input (``d_in``), then output indices on no input (``d_out``). A then comes
    out (batch, rank, d_in), which the input product reads as a transposed matrix, and B
    (batch, rank, d_out). With torch 2.13 on a 2-core x86 CPU, ``bmm`` of a (8, 64, 256) input
    with such a transposed (8, 256, 4) view took 15 us, and with a contiguous (8, 256, 4) matrix 51 us
    (a one-off ``timeit``).
    """
    on_input = {index for node in network.nodes if node.role == "input" for index in node.indices}
    on_input |= set(network.expand(tuple(on_input)))
    in_output = list(output) + [part for part in network.expand(output) if part not in output]

    def key(index: str) -> tuple[int, int]:
        if index in in_output:
            return (0 if index in on_input else 3, in_output.index(index))
        return (2 if index in on_input else 1, indices.index(index))

    return tuple(sorted(indices, key=key))


def _prepare_steps(contraction_list, size_dict: dict[str, int]) -> tuple[Step, ...]:
    """Turn opt_einsum's contraction list into steps: a :class:`~.backend.PairStep` per pair, else einsum."""
    steps: list[Step] = []
    for inds, _, einsum_str, _, _ in contraction_list:
        inputs = einsum_str.split("->")[0].split(",")
        if len(inputs) == 2 and all(len(set(letters)) == len(letters) for letters in inputs):
            shapes = [tuple(size_dict[letter] for letter in letters) for letters in inputs]
            steps.append((tuple(inds), pair_step(einsum_str, *shapes)))
        else:
            steps.append((tuple(inds), partial(torch.einsum, einsum_str)))
    return tuple(steps)


def _make_stage(
    network: TensorNetwork,
    operands: Sequence[tuple[str, tuple[str, ...]]],
    output: tuple[str, ...],
    optimize: str,
    slots: dict[str, int],
    contiguous: bool = False,
) -> Stage:
    """Cost and prepare one einsum over ``operands`` (name, indices) that gives ``output``.

    A fused index is written as its parts in this einsum when some operand carries one of its
    parts: operands that carry the fused index are then unfolded, and an output that carries it
    is folded afterwards.
    """
    sizes = network.sizes
    fused = network.fused
    present = {index for _, indices in operands for index in indices}
    split = {name for name, (parts, _) in fused.items() if present.intersection(parts)}
    unfold = tuple(
        (position, index) for position, (_, indices) in enumerate(operands) for index in indices if index in split
    )
    expanded_ops = [
        tuple(part for index in indices for part in (fused[index][0] if index in split else (index,)))
        for _, indices in operands
    ]
    expanded_output = tuple(part for index in output for part in (fused[index][0] if index in split else (index,)))
    eq = equation(expanded_ops, expanded_output, network.letters())
    shapes = [tuple(sizes[index] for index in indices) for indices in expanded_ops]
    path, info = opt_einsum.contract_path(eq, *shapes, shapes=True, optimize=optimize)
    path = tuple(tuple(step) for step in path)
    flops, largest = int(info.opt_cost), int(info.largest_intermediate)
    if len(shapes) == 1:
        flops, largest = math.prod(shapes[0]), math.prod(sizes[index] for index in expanded_output)

    # Unfold right to left within an operand, so that splitting one axis leaves the positions of the earlier ones.
    unfold_axes = tuple(
        (position, axis, tuple(sizes[part] for part in fused[indices[axis]][0]))
        for position, (_, indices) in enumerate(operands)
        for axis in reversed(range(len(indices)))
        if indices[axis] in split
    )
    padded = [
        math.prod(sizes[index] for index in operands[position][1]) // sizes[operands[position][1][axis]] * math.prod(parts)
        for position, axis, parts in unfold_axes
        if math.prod(parts) != sizes[operands[position][1][axis]]
    ]
    widths = [len(fused[index][0]) if index in split else 1 for index in output]
    fold_axes = tuple(
        (sum(widths[:position]), widths[position], fused[output[position]][1])
        for position in reversed(range(len(output)))
        if output[position] in split
    )
    # Merging one part without a cut is a view; otherwise the parts are copied into one axis.
    copies = any(n_parts > 1 or size != math.prod(sizes[part] for part in fused[output_index][0])
                 for (_, n_parts, size), output_index in zip(fold_axes, reversed([i for i in output if i in split])))
    result_size = math.prod(sizes[index] for index in output)
    cost = stage_cost(info.contraction_list, info.size_dict, flops, padded, result_size if copies else 0,
                      result_size if contiguous else 0)
    return Stage(
        tuple(name for name, _ in operands), tuple(indices for _, indices in operands), output, eq, path, flops, largest,
        cost, unfold, tuple(index for index in output if index in split), tuple(slots[name] for name, _ in operands),
        unfold_axes, fold_axes, _prepare_steps(info.contraction_list, info.size_dict),
        tuple(step_gradients(einsum_str, info.size_dict) for _, _, einsum_str, _, _ in info.contraction_list), contiguous,
    )


def _stages_for(
    network: TensorNetwork, groups: list[tuple[str, ...]], output: tuple[str, ...], optimize: str
) -> tuple[Stage, ...]:
    """Build the stage-1 einsum of each group, then the stage-2 einsum that gives ``output``."""
    grouped = {name for group in groups for name in group}
    expanded_output = set(network.expand(output))
    slots = {node.name: position for position, node in enumerate(network.nodes)}
    stages: list[Stage] = []
    results: list[tuple[str, tuple[str, ...]]] = []
    for position, group in enumerate(groups):
        outside = [node for node in network.nodes if node.name not in group]
        needed = expanded_output | {index for node in outside for index in network.expand(node.indices)}
        indices = dict.fromkeys(index for name in group for index in network.expand(network.node(name).indices))
        kept = tuple(index for index in indices if index in needed)
        # Inputs take a fused index whole or split, so only the other parameters block a fold.
        blocked = {index for node in outside if node.role != "input" for index in node.indices}
        result_indices = _layout(network, _fold(network, kept, blocked), output)
        operands = [(name, network.node(name).indices) for name in group]
        stages.append(_make_stage(network, operands, result_indices, optimize, slots, contiguous=True))
        results.append((f"stage:{position}", result_indices))
        slots[f"stage:{position}"] = len(network.nodes) + position
    operands = [(node.name, node.indices) for node in network.nodes if node.name not in grouped] + results
    stages.append(_make_stage(network, operands, output, optimize, slots))
    return tuple(stages)


def build_stages(network: TensorNetwork, output: tuple[str, ...], optimize: str, strategy: str = "auto") -> PlanReport:
    """Cost every candidate strategy for the network's sizes and return the cheapest as a report.

    ``strategy="auto"`` picks the lowest estimated cost (:func:`~.costs.total_cost`), earlier
    candidates winning ties in the order of :data:`~tensorpoly_tn.planner.strategies.STRATEGIES`;
    a strategy name forces that one.
    """
    names = STRATEGIES if strategy == "auto" else (strategy,)
    candidates = candidate_groupings(network, names)
    if not candidates:
        raise ValueError(f"strategy {strategy!r} does not apply to this network: it needs labelled groups of two or more tensors")
    built = {name: _stages_for(network, groups, output, optimize) for name, groups in candidates.items()}
    flops = {name: sum(stage.flops for stage in stages) for name, stages in built.items()}
    costs = {name: total_cost(stage.cost for stage in stages) for name, stages in built.items()}
    chosen = min(costs, key=lambda name: (costs[name], list(costs).index(name)))
    stages = built[chosen]
    logger.debug("planned %s with %s: costs %s, FLOPs %s", network.equation(output), chosen, costs, flops)
    return PlanReport(
        chosen, stages, flops[chosen], max(stage.largest_intermediate for stage in stages), flops, costs, costs[chosen]
    )
