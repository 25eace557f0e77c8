r"""Trainable parameter counts: counted on built models and in closed form per method.

Per adapted linear layer with input width d_in, output width d_out, rank r, T tasks, K terms,
order N, leaf lengths ``L_in = ceil(d_in ** (1/N))`` and ``L_out = ceil(d_out ** (1/N))``,
S skills and H splits, the trainable parameters are

=================  ==========================================
lora               r (d_in + d_out)
tlora              N K r (L_in + L_out)
poly, mhr          S r (d_in + d_out) + T H S
tensorpoly-1       N K r (L_in + L_out) + T K
tensorpoly-2       N K r (L_in + L_out) + T N K
=================  ==========================================

The router term is dropped for selectors that ignore the logits (``uniform``, ``private``). In
router-only training (``router_only``) only the router term is left, or one row of it (H S, K
or N K) when ``tuned_task`` is set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .config import TensorPolyConfig
from .inject import adapter_layers, apply_adapters
from .routing import get_selector
from .tlora import leaf_length

__all__ = [
    "layer_parameter_count",
    "closed_form_count",
    "counted_parameters",
    "target_shapes",
    "build_meta_model",
    "MethodCount",
    "count_methods",
]


def _router_row_width(config: TensorPolyConfig) -> int:
    if config.method in ("poly", "mhr"):
        return config.n_splits * config.n_skills
    if config.method == "tensorpoly-1":
        return config.n_terms
    if config.method == "tensorpoly-2":
        return config.order * config.n_terms
    return 0


def layer_parameter_count(config: TensorPolyConfig, d_in: int, d_out: int) -> int:
    """Return the closed-form trainable parameter count of one adapted (d_in, d_out) linear layer."""
    r, order, n_terms = config.rank, config.order, config.n_terms
    if config.method == "lora":
        factors = r * (d_in + d_out)
    elif config.method in ("poly", "mhr"):
        factors = config.n_skills * r * (d_in + d_out)
    elif config.method in ("tlora", "tensorpoly-1", "tensorpoly-2"):
        factors = order * n_terms * r * (leaf_length(d_in, order) + leaf_length(d_out, order))
    else:
        raise ValueError(
            f"no closed form for method {config.method!r}; closed forms exist for "
            "lora, tlora, poly, mhr, tensorpoly-1 and tensorpoly-2"
        )
    row = _router_row_width(config)
    if row and not get_selector(config.selector).uses_logits:
        row = 0
    router = row * config.n_tasks
    if config.router_only:
        return row if config.tuned_task is not None else router
    return factors + router


def closed_form_count(config: TensorPolyConfig, shapes: Sequence[tuple[int, int]]) -> int:
    """Return the closed-form trainable parameter count over layers of shapes (d_in, d_out)."""
    return sum(layer_parameter_count(config, d_in, d_out) for d_in, d_out in shapes)


def counted_parameters(model: nn.Module) -> dict[str, int]:
    """Return the trainable parameters of each adapter layer of ``model``, counted, by module name."""
    return {
        name: sum(p.numel() for p in layer.parameters() if p.requires_grad)
        for name, layer in adapter_layers(model).items()
    }


def target_shapes(model: nn.Module, config: TensorPolyConfig) -> dict[str, tuple[int, int]]:
    """Return (d_in, d_out) of every ``nn.Linear`` of ``model`` that ``config.target_modules`` selects."""
    patterns = [re.compile(pattern) for pattern in config.target_modules]
    return {
        name: (module.in_features, module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and any(p.fullmatch(name) for p in patterns)
    }


def build_meta_model(model_config: str) -> nn.Module:
    """Build the T5 named ``model_config`` (see :mod:`tensorpoly_tn.model_configs`) on the meta device.

    Meta tensors have shapes and no storage, so even T5-large costs no memory or download.
    """
    import transformers

    from .model_configs import t5_config

    with torch.device("meta"):
        return transformers.T5ForConditionalGeneration(t5_config(model_config))


@dataclass
class MethodCount:
    """Trainable parameters of one method on one model: counted, closed form and per layer."""

    method: str
    counted: int
    closed_form: int
    base_parameters: int
    per_layer: dict[str, int]
    shapes: dict[str, tuple[int, int]]

    @property
    def share(self) -> float:
        """Trainable parameters as a fraction of the base model's parameters."""
        return self.counted / max(self.base_parameters, 1)


def count_methods(model_config: str, configs: Sequence[TensorPolyConfig]) -> list[MethodCount]:
    """Count trainable parameters of each config on a fresh meta-device build of ``model_config``."""
    results = []
    for config in configs:
        model = build_meta_model(model_config)
        base_parameters = sum(p.numel() for p in model.parameters())
        shapes = target_shapes(model, config)
        apply_adapters(model, config)
        per_layer = counted_parameters(model)
        results.append(
            MethodCount(
                method=config.method,
                counted=sum(per_layer.values()),
                closed_form=closed_form_count(config, list(shapes.values())),
                base_parameters=base_parameters,
                per_layer=per_layer,
                shapes=shapes,
            )
        )
    return results
