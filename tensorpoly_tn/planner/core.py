"""Plan a :class:`~tensorpoly_tn.network.TensorNetwork` once per set of shapes and run it on torch tensors.

A plan has two stages. Stage 1 contracts groups of parameter and routing nodes (no per-token
index), once per call. Stage 2 contracts the inputs with the group results and the other nodes.
Each candidate strategy (see :mod:`tensorpoly_tn.planner.strategies`) is costed with
:func:`opt_einsum.contract_path` and the one with the fewest FLOPs is built with
:func:`opt_einsum.contract_expression`. Built plans are cached by the shapes, dtypes and devices
of the call, so a warm call costs one dictionary look-up before the contractions.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import opt_einsum

from ..indices import equation
from ..network import TensorNetwork
from .strategies import STRATEGIES, candidate_groupings

__all__ = ["Stage", "PlanReport", "build_stages"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """One einsum of a plan: which operands it takes, its output indices and its compiled expression.

    ``operands`` names network nodes or earlier stage results (``"stage:<k>"``). ``unfold`` lists
    (operand position, fused index) pairs padded and split into their parts before the einsum, and
    ``fold`` the fused output indices whose parts are merged and cut to size after it.
    """

    operands: tuple[str, ...]
    operand_indices: tuple[tuple[str, ...], ...]  # as the operands arrive, fused indices whole
    output: tuple[str, ...]
    equation: str
    path: tuple[tuple[int, ...], ...]
    flops: int
    largest_intermediate: int
    expression: object
    unfold: tuple[tuple[int, str], ...]
    fold: tuple[str, ...]


@dataclass(frozen=True)
class PlanReport:
    """What a plan does for one set of shapes: chosen strategy, stages, FLOPs and the candidates' FLOPs."""

    strategy: str
    stages: tuple[Stage, ...]
    flops: int
    largest_intermediate: int
    candidates: dict[str, int]

    @property
    def path(self) -> tuple[tuple[tuple[int, ...], ...], ...]:
        """The opt_einsum path of each stage."""
        return tuple(stage.path for stage in self.stages)

    def describe(self) -> str:
        """Return a readable multi-line summary."""
        lines = [f"strategy {self.strategy}: {self.flops:.3e} FLOPs, largest intermediate {self.largest_intermediate:.3e}"]
        for position, stage in enumerate(self.stages):
            lines.append(f"  stage {position}: {stage.equation}  path {list(stage.path)}  {stage.flops:.3e} FLOPs")
        others = ", ".join(f"{name} {flops:.3e}" for name, flops in self.candidates.items())
        lines.append(f"  candidates: {others}")
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


def _make_stage(
    network: TensorNetwork,
    operands: Sequence[tuple[str, tuple[str, ...]]],
    output: tuple[str, ...],
    optimize: str,
) -> Stage:
    """Cost and compile one einsum over ``operands`` (name, indices) that gives ``output``.

    A fused index is written as its parts in this einsum when some operand carries one of its
    parts: operands that carry the fused index are then unfolded, and an output that carries it
    is folded afterwards.
    """
    sizes = network.sizes
    present = {index for _, indices in operands for index in indices}
    split = {name for name, (parts, _) in network.fused.items() if present.intersection(parts)}
    unfold = tuple(
        (position, index) for position, (_, indices) in enumerate(operands) for index in indices if index in split
    )
    expanded_ops = [
        tuple(part for index in indices for part in (network.fused[index][0] if index in split else (index,)))
        for _, indices in operands
    ]
    expanded_output = tuple(
        part for index in output for part in (network.fused[index][0] if index in split else (index,))
    )
    eq = equation(expanded_ops, expanded_output, network.letters())
    shapes = [tuple(sizes[index] for index in indices) for indices in expanded_ops]
    if len(shapes) == 1:
        path, flops = ((0,),), math.prod(shapes[0])
        largest = math.prod(sizes[index] for index in expanded_output)
    else:
        path, info = opt_einsum.contract_path(eq, *shapes, shapes=True, optimize=optimize)
        path, flops, largest = tuple(tuple(step) for step in path), int(info.opt_cost), int(info.largest_intermediate)
    expression = opt_einsum.contract_expression(eq, *shapes, optimize=[list(step) for step in path])
    folds = tuple(index for index in output if index in split)
    return Stage(
        tuple(name for name, _ in operands), tuple(indices for _, indices in operands), output, eq, path, flops, largest,
        expression, unfold, folds,
    )


def _stages_for(
    network: TensorNetwork, groups: list[tuple[str, ...]], output: tuple[str, ...], optimize: str
) -> tuple[Stage, ...]:
    """Build the stage-1 einsum of each group, then the stage-2 einsum that gives ``output``."""
    grouped = {name for group in groups for name in group}
    expanded_output = set(network.expand(output))
    stages: list[Stage] = []
    results: list[tuple[str, tuple[str, ...]]] = []
    for position, group in enumerate(groups):
        outside = [node for node in network.nodes if node.name not in group]
        needed = expanded_output | {index for node in outside for index in network.expand(node.indices)}
        indices = dict.fromkeys(index for name in group for index in network.expand(network.node(name).indices))
        kept = tuple(index for index in indices if index in needed)
        # Inputs take a fused index whole or split, so only the other parameters block a fold.
        blocked = {index for node in outside if node.role != "input" for index in node.indices}
        result_indices = _fold(network, kept, blocked)
        operands = [(name, network.node(name).indices) for name in group]
        stages.append(_make_stage(network, operands, result_indices, optimize))
        results.append((f"stage:{position}", result_indices))
    operands = [(node.name, node.indices) for node in network.nodes if node.name not in grouped] + results
    stages.append(_make_stage(network, operands, output, optimize))
    return tuple(stages)


def build_stages(network: TensorNetwork, output: tuple[str, ...], optimize: str, strategy: str = "auto") -> PlanReport:
    """Cost every candidate strategy for the network's sizes and return the cheapest as a report.

    ``strategy="auto"`` picks the fewest total FLOPs, earlier candidates winning ties in the order
    of :data:`~tensorpoly_tn.planner.strategies.STRATEGIES`; a strategy name forces that one.
    """
    names = STRATEGIES if strategy == "auto" else (strategy,)
    candidates = candidate_groupings(network, names)
    if not candidates:
        raise ValueError(f"strategy {strategy!r} does not apply to this network: it needs labelled groups of two or more tensors")
    built = {name: _stages_for(network, groups, output, optimize) for name, groups in candidates.items()}
    costs = {name: sum(stage.flops for stage in stages) for name, stages in built.items()}
    chosen = min(costs, key=lambda name: (costs[name], list(costs).index(name)))
    stages = built[chosen]
    logger.debug("planned %s with %s: %s", network.equation(output), chosen, costs)
    return PlanReport(chosen, stages, costs[chosen], max(stage.largest_intermediate for stage in stages), costs)
