"""``plan(network)``: a callable contraction cached by the shapes, dtypes and devices of each call."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch

from ..network import TensorNetwork
from .core import PlanReport, build_stages
from .reverse import PlannedContraction, needs_hand_gradient, run_stages
from .strategies import STRATEGIES

__all__ = ["Plan", "plan", "BACKEND", "BACKWARD_MODES"]

logger = logging.getLogger(__name__)

#: The module to pass as opt_einsum's ``backend`` to run an expression's pairwise steps as ``bmm``;
#: planned stages call the same steps directly, see :mod:`tensorpoly_tn.planner.backend`.
BACKEND = "tensorpoly_tn.planner.backend"

#: The ways a plan can be differentiated. ``"planned"`` runs each call as one autograd node with
#: planned gradient steps (:mod:`tensorpoly_tn.planner.reverse`), and ``"autograd"`` lets torch record every step.
BACKWARD_MODES: tuple[str, ...] = ("planned", "autograd")


class Plan:
    """A planned contraction of a network, callable on torch tensors.

    Call it with one tensor per node, by position (the order the nodes were added) or by name.
    Sizes may differ from the network's between calls (batch and sequence, say); each new set of
    shapes, dtypes and devices is planned once and cached. Gradients reach every input; see
    :func:`plan` for the two ways they are computed.
    """

    def __init__(
        self,
        network: TensorNetwork,
        output: Sequence[str] | None = None,
        optimize: str = "auto",
        strategy: str = "auto",
        backward: str = "planned",
    ) -> None:
        if strategy != "auto" and strategy not in STRATEGIES:
            raise ValueError(f"strategy must be 'auto' or one of {STRATEGIES}, got {strategy!r}")
        if backward not in BACKWARD_MODES:
            raise ValueError(f"backward must be one of {BACKWARD_MODES}, got {backward!r}")
        self.network = network
        self.output = network.check(output)
        self.optimize = optimize
        self.strategy = strategy
        self.backward = backward
        self._cache: dict[tuple, tuple[TensorNetwork, PlanReport]] = {}
        self._last: PlanReport | None = None
        self._n_nodes = len(network.nodes)

    def _resized(self, tensors: Sequence[torch.Tensor]) -> TensorNetwork:
        """Return a copy of the network with the sizes of ``tensors``; a mismatch raises ``ValueError``."""
        resized = TensorNetwork(self.network.hyper_indices)
        for node, tensor in zip(self.network.nodes, tensors):
            if tensor.dim() != len(node.indices):
                raise ValueError(
                    f"tensor {node.name!r} must have {len(node.indices)} dimensions {node.indices}, "
                    f"got shape {tuple(tensor.shape)}"
                )
            resized.add(node.name, node.indices, tensor.shape, role=node.role, group=node.group)
        for name, (parts, size) in self.network.fused.items():
            resized.fuse(name, parts, resized.sizes.get(name, size))
        return resized

    def _ordered(self, args: tuple, kwargs: dict) -> list[torch.Tensor]:
        names = [node.name for node in self.network.nodes]
        if args and kwargs:
            raise TypeError("pass the tensors either all by position or all by name, not both")
        if kwargs:
            missing = [name for name in names if name not in kwargs]
            extra = [name for name in kwargs if name not in names]
            if missing or extra:
                raise TypeError(f"tensors missing: {missing}, unknown: {extra}; the network's tensors are {names}")
            return [kwargs[name] for name in names]
        if len(args) != len(names):
            raise TypeError(f"expected {len(names)} tensors {names}, got {len(args)}")
        return list(args)

    def compiled(self, tensors: Sequence[torch.Tensor]) -> tuple[TensorNetwork, PlanReport]:
        """Return the resized network and report for these tensors, planning them on a cache miss."""
        key = tuple((t.shape, t.dtype, t.device) for t in tensors)
        entry = self._cache.get(key)
        if entry is None:
            resized = self._resized(tensors)
            entry = (resized, build_stages(resized, self.output, self.optimize, self.strategy))
            self._cache[key] = entry
            logger.debug("new plan for shapes %s:\n%s", [k[0] for k in key], entry[1].describe())
        return entry

    def __call__(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        """Contract the network; returns a tensor with the output indices in order."""
        tensors = list(args) if not kwargs and len(args) == self._n_nodes else self._ordered(args, kwargs)
        _, report = self.compiled(tensors)
        self._last = report
        if self.backward == "planned" and report.planned_backward and needs_hand_gradient(tensors):
            return PlannedContraction.apply(report, *tensors)
        return run_stages(report, tensors)

    def report(self) -> PlanReport:
        """Return the report for the last call's shapes, or for the network's own sizes before any call."""
        if self._last is None:
            self._last = build_stages(self.network, self.output, self.optimize, self.strategy)
        return self._last

    def __repr__(self) -> str:
        return (
            f"Plan({self.network.equation(self.output)!r}, optimize={self.optimize!r}, "
            f"strategy={self.strategy!r}, backward={self.backward!r})"
        )


def plan(
    network: TensorNetwork,
    output: Sequence[str] | None = None,
    optimize: str = "auto",
    strategy: str = "auto",
    backward: str = "planned",
) -> Plan:
    """Plan the contraction of ``network`` down to ``output``.

    Parameters
    ----------
    network
        The tensor network; its sizes are the first shapes planned, later calls may use others.
    output
        Output indices in order; ``None`` uses :meth:`TensorNetwork.default_output`.
    optimize
        opt_einsum path optimiser for every stage (``"auto"``, ``"optimal"``, ``"dp"``, ...).
    strategy
        ``"auto"`` to take the candidate with the lowest estimated cost (FLOPs, memory traffic
        and per-call overhead, see :mod:`tensorpoly_tn.planner.costs`), or one of
        :data:`~tensorpoly_tn.planner.strategies.STRATEGIES` to force it.
    backward
        ``"planned"`` (the default) runs a call that needs gradients as one autograd node whose
        backward pass is planned too: the gradient of each pairwise step is a pairwise step,
        worked out with the plan. Plans with a step it cannot differentiate (a letter repeated
        within one operand) fall back to autograd. ``"autograd"`` lets torch record every step.
        Both give the same gradients. The planned one saves the per-node overhead of autograd,
        which dominates at small widths. It supports first derivatives only, and calls under
        ``torch.autocast`` use autograd.

    Returns
    -------
    Plan
        Callable on one torch tensor per node; :meth:`Plan.report` gives the path, FLOPs,
        cost terms, largest intermediate and chosen strategy.
    """
    return Plan(copy.deepcopy(network), output, optimize, strategy, backward)
