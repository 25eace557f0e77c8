"""The registry of adapter methods: method name -> function that wraps one linear layer.

A builder takes ``(base_layer, config)``, where ``config`` is a
:class:`tensorpoly_tn.TensorPolyConfig`, and returns an :class:`AdapterLinear`. The built-in
methods are registered on import; :func:`register_method` adds more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .base import AdapterLinear
from .lora import LoRALinear
from .poly import MHRLinear, PolyLinear
from .tensorpoly import TensorPolyLinear
from .tensorpoly2 import TensorPoly2Linear
from .tlora import TLoRALinear

__all__ = ["METHOD_BUILDERS", "MethodBuilder", "register_method", "get_method_builder"]

MethodBuilder = Callable[[nn.Linear, Any], AdapterLinear]

METHOD_BUILDERS: dict[str, MethodBuilder] = {}


def register_method(name: str, builder: MethodBuilder) -> MethodBuilder:
    """Register ``builder`` under ``name``; raise ``ValueError`` if the name is taken."""
    if name in METHOD_BUILDERS:
        raise ValueError(f"method {name!r} is already registered; registered methods are {sorted(METHOD_BUILDERS)}")
    METHOD_BUILDERS[name] = builder
    return builder


def get_method_builder(name: str) -> MethodBuilder:
    """Return the builder registered as ``name``; raise ``ValueError`` listing the known names."""
    try:
        return METHOD_BUILDERS[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}: method must be one of the registered methods {sorted(METHOD_BUILDERS)}"
        ) from None


def _build_lora(base_layer: nn.Linear, config: Any) -> AdapterLinear:
    return LoRALinear(base_layer, config.rank, config.scaling)


def _build_tlora(base_layer: nn.Linear, config: Any) -> AdapterLinear:
    return TLoRALinear(
        base_layer, config.rank, config.n_terms, config.order, config.normalize, config.scaling, config.fused_training
    )


def _build_poly(base_layer: nn.Linear, config: Any) -> AdapterLinear:
    layer_class = MHRLinear if config.method == "mhr" else PolyLinear
    return layer_class(
        base_layer,
        rank=config.rank,
        n_tasks=config.n_tasks,
        n_skills=config.n_skills,
        n_splits=config.n_splits,
        scaling=config.scaling,
        selector=config.selector,
    )


def _build_tensorpoly(base_layer: nn.Linear, config: Any) -> AdapterLinear:
    layer_class = TensorPoly2Linear if config.method == "tensorpoly-2" else TensorPolyLinear
    return layer_class(
        base_layer,
        rank=config.rank,
        n_tasks=config.n_tasks,
        n_terms=config.n_terms,
        order=config.order,
        normalize=config.normalize,
        scaling=config.scaling,
        selector=config.selector,
        fused_training=config.fused_training,
    )


register_method("lora", _build_lora)
register_method("tlora", _build_tlora)
register_method("poly", _build_poly)
register_method("mhr", _build_poly)
register_method("tensorpoly-1", _build_tensorpoly)
register_method("tensorpoly-2", _build_tensorpoly)
