"""Per-method adapter settings of the experiments, with ranks chosen to match a parameter budget."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from torch import nn

from ..accounting import closed_form_count, target_shapes
from ..config import METHODS, TensorPolyConfig

__all__ = ["EXPERIMENT_METHODS", "method_settings", "match_rank", "build_method_configs"]

logger = logging.getLogger(__name__)

#: The methods the experiments compare, dense (lora, tlora) first, then the routed ones.
EXPERIMENT_METHODS: tuple[str, ...] = ("lora", "tlora", "poly", "mhr", "tensorpoly-1", "tensorpoly-2")
MAX_MATCHED_RANK = 64


def method_settings(method: str, n_experts: int, n_splits: int = 4, order: int = 2) -> dict:
    """Return the TensorPolyConfig fields of ``method`` before budget matching.

    Poly and MHR use ``n_experts`` skills of rank 1, as Polytropon and MHR do; the TLoRA-based
    methods use ``n_experts`` terms of the given ``order``. Ranks of the others are set by
    :func:`match_rank`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method in ("poly", "mhr"):
        return {"method": method, "n_skills": n_experts, "rank": 1, "n_splits": n_splits if method == "mhr" else 1}
    if method in ("tlora", "tensorpoly-1", "tensorpoly-2"):
        return {"method": method, "n_terms": n_experts, "order": order}
    return {"method": method}


def match_rank(config: TensorPolyConfig, shapes: Sequence[tuple[int, int]], budget: int) -> TensorPolyConfig:
    """Return ``config`` with the rank in ``[1, MAX_MATCHED_RANK]`` whose trainable count is closest to ``budget``."""
    if budget < 1:
        raise ValueError(f"budget must be a positive parameter count, got {budget!r}")
    candidates = [dataclasses.replace(config, rank=rank) for rank in range(1, MAX_MATCHED_RANK + 1)]
    return min(candidates, key=lambda c: abs(closed_form_count(c, shapes) - budget))


def build_method_configs(
    model: nn.Module,
    methods: Sequence[str],
    n_tasks: int,
    n_experts: int,
    budget_reference: str | None = "poly",
    n_splits: int = 4,
    order: int = 2,
) -> dict[str, tuple[TensorPolyConfig, int]]:
    """Build the adapter config of each method and its trainable parameter count on ``model``.

    Parameters
    ----------
    model
        The backbone (unchanged); only its linear layer shapes are read.
    methods
        Names from :data:`tensorpoly_tn.config.METHODS`.
    n_tasks
        Router rows: every task of the benchmark, training and held-out.
    n_experts
        Skills of Poly and MHR, terms of the TLoRA-based methods.
    budget_reference
        Method whose trainable count the others' ranks are matched to, or ``None`` to keep rank 8
        (and rank 1 for Poly and MHR).

    Returns
    -------
    dict
        Method name to ``(config, trainable_parameters)``.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known methods are {METHODS}")
    if budget_reference is not None and budget_reference not in METHODS:
        raise ValueError(f"budget_reference must be None or one of {METHODS}, got {budget_reference!r}")
    configs = {
        m: TensorPolyConfig(n_tasks=n_tasks, **method_settings(m, n_experts, n_splits, order)) for m in methods
    }
    shapes = list(target_shapes(model, next(iter(configs.values()))).values()) if configs else []
    if budget_reference is not None:
        reference = TensorPolyConfig(n_tasks=n_tasks, **method_settings(budget_reference, n_experts, n_splits, order))
        budget = closed_form_count(reference, shapes)
        for method, config in configs.items():
            if method != budget_reference and config.method not in ("poly", "mhr"):
                configs[method] = match_rank(config, shapes, budget)
        logger.info("matched ranks to the %s budget of %d trainable parameters", budget_reference, budget)
    return {m: (c, closed_form_count(c, shapes)) for m, c in configs.items()}
