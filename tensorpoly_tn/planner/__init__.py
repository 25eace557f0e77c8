"""Contraction planning for tensor networks: ``plan(network)`` returns a cached, callable contraction.

Adapter authors describe their update as a :class:`~tensorpoly_tn.network.TensorNetwork` and call
:func:`plan`; :mod:`tensorpoly_tn.planner.adapters` holds the networks of LoRA, TLoRA and
TensorPoly-I as examples and as the layers' computation path.
"""

from .core import PlanReport, Stage
from .plan import BACKEND, BACKWARD_MODES, Plan, plan
from .strategies import STRATEGIES, candidate_groupings

__all__ = ["plan", "Plan", "PlanReport", "Stage", "STRATEGIES", "candidate_groupings", "BACKEND", "BACKWARD_MODES"]
