"""Save and load adapters: safetensors for the tensors and JSON for the config, never pickle.

A saved directory contains

``tensorpoly_adapters.json``
    ``{"format": "tensorpoly_tn-adapters", "format_version": 1, "config": {...},
    "layers": {"<module>": {"method": ..., "tensors": {"<name>": [shape]}}}}``
``tensorpoly_adapters.safetensors``
    One tensor per adapter parameter, named ``<module>.<parameter>``, for example
    ``encoder.block.0.layer.0.SelfAttention.q.router.logits``. Frozen base weights are not saved.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .config import TensorPolyConfig
from .inject import adapter_layers, apply_adapters
from .layers import AdapterLinear

__all__ = ["save_adapters", "load_adapters", "ADAPTER_CONFIG_NAME", "ADAPTER_WEIGHTS_NAME", "FORMAT_NAME"]

logger = logging.getLogger(__name__)

ADAPTER_CONFIG_NAME = "tensorpoly_adapters.json"
ADAPTER_WEIGHTS_NAME = "tensorpoly_adapters.safetensors"
FORMAT_NAME = "tensorpoly_tn-adapters"
FORMAT_VERSION = 1


def _adapter_tensors(layer: AdapterLinear) -> dict[str, torch.Tensor]:
    """Return the layer's own tensors by name, without the frozen base layer; a tuned router row is folded in."""
    tensors = {
        name: tensor
        for name, tensor in layer.state_dict().items()
        if not name.startswith("base_layer.") and not name.endswith("tuned_logits")
    }
    router = getattr(layer, "router", None)
    if router is not None:
        tensors["router.logits"] = router.effective_logits().detach()
    return tensors


def _layer_config(layers: dict[str, AdapterLinear]) -> TensorPolyConfig:
    configs = [getattr(layer, "adapter_config", None) for layer in layers.values()]
    if any(config is None for config in configs):
        raise ValueError(
            "an adapter layer has no adapter_config; save models whose adapters come from "
            "tensorpoly_tn.apply_adapters or tensorpoly_tn.merge"
        )
    return configs[0]


def save_adapters(model: nn.Module, path: str | Path) -> Path:
    """Write the adapters of ``model`` and their config to directory ``path``.

    Returns the directory. Raises ``ValueError`` when the model has no adapters.
    """
    layers = adapter_layers(model)
    if not layers:
        raise ValueError("the model has no adapter layers to save; call tensorpoly_tn.apply_adapters first")
    config = _layer_config(layers)
    tensors: dict[str, torch.Tensor] = {}
    description: dict[str, Any] = {}
    for module_name, layer in layers.items():
        own = _adapter_tensors(layer)
        description[module_name] = {
            "method": layer.method,
            "tensors": {name: list(tensor.shape) for name, tensor in own.items()},
        }
        for name, tensor in own.items():
            tensors[f"{module_name}.{name}"] = tensor.detach().cpu().contiguous()
    saved_config = config.to_dict()
    saved_config["router_only"], saved_config["tuned_task"] = False, None  # training modes are not part of the weights
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "config": saved_config, "layers": description}

    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / ADAPTER_WEIGHTS_NAME), metadata={"format": "pt"})
    (directory / ADAPTER_CONFIG_NAME).write_text(json.dumps(header, indent=2))
    logger.info("saved %d adapter layers (%d tensors) to %s", len(layers), len(tensors), directory)
    return directory


def _read_header(directory: Path) -> dict[str, Any]:
    config_path = directory / ADAPTER_CONFIG_NAME
    if not config_path.is_file() or not (directory / ADAPTER_WEIGHTS_NAME).is_file():
        raise FileNotFoundError(
            f"{directory} is not a saved adapter directory: it needs {ADAPTER_CONFIG_NAME} and "
            f"{ADAPTER_WEIGHTS_NAME}, as written by tensorpoly_tn.save_adapters"
        )
    header = json.loads(config_path.read_text())
    if header.get("format") != FORMAT_NAME or header.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{config_path} has format {header.get('format')!r} version {header.get('format_version')!r}; "
            f"this version of tensorpoly_tn reads {FORMAT_NAME!r} version {FORMAT_VERSION}"
        )
    return header


def _check_compatible(saved: TensorPolyConfig, current: TensorPolyConfig) -> None:
    if saved.method != current.method:
        raise ValueError(
            f"the saved adapters use method {saved.method!r} but the model's adapters use {current.method!r}; "
            f"build the model with method={saved.method!r}, or load into a model without adapters"
        )
    if saved.n_tasks != current.n_tasks:
        raise ValueError(
            f"the saved adapters have {saved.n_tasks} tasks but the model's routers have {current.n_tasks}; "
            f"build the model with n_tasks={saved.n_tasks}, or load first and then call tensorpoly_tn.add_tasks"
        )


def _check_layers(saved_layers: dict[str, Any], layers: dict[str, AdapterLinear], tensors: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(layers) - set(saved_layers))
    unexpected = sorted(set(saved_layers) - set(layers))
    if missing or unexpected:
        raise ValueError(
            f"the saved adapters and the model adapt different layers: missing from the file {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''} ({len(missing)} in all), not in the model {unexpected[:5]}"
            f"{' ...' if len(unexpected) > 5 else ''} ({len(unexpected)} in all)"
        )
    for module_name, layer in layers.items():
        own = _adapter_tensors(layer)
        for name, expected in own.items():
            key = f"{module_name}.{name}"
            if key not in tensors:
                raise ValueError(f"tensor {key!r} is missing from the saved adapters")
            if tuple(tensors[key].shape) != tuple(expected.shape):
                raise ValueError(
                    f"tensor {key!r} has shape {tuple(tensors[key].shape)} in the file but "
                    f"{tuple(expected.shape)} in the model; check rank, n_terms, order, n_skills and n_splits"
                )
        extra = sorted(set(saved_layers[module_name]["tensors"]) - set(own))
        if extra:
            raise ValueError(f"the saved adapters of {module_name!r} hold tensors {extra} that the model's layer has not")


def load_adapters(model: nn.Module, path: str | Path) -> TensorPolyConfig:
    """Load adapters saved by :func:`save_adapters` into ``model``; return their config.

    A model without adapters gets them first, built from the saved config. A model with adapters
    must match: same method, same task count, same adapted layers and the same tensor shapes.

    Raises
    ------
    FileNotFoundError
        When ``path`` lacks the two files.
    ValueError
        Naming the first mismatch in method, task count, layer names or tensor shape.
    """
    directory = Path(path)
    header = _read_header(directory)
    saved = TensorPolyConfig.from_dict(header["config"])
    layers = adapter_layers(model)
    if not layers:
        apply_adapters(model, saved)
        layers = adapter_layers(model)
    _check_compatible(saved, _layer_config(layers))
    tensors = load_file(str(directory / ADAPTER_WEIGHTS_NAME))
    _check_layers(header["layers"], layers, tensors)

    with torch.no_grad():
        for module_name, layer in layers.items():
            for name, target in layer.named_parameters(remove_duplicate=False):
                key = f"{module_name}.{name}"
                if key in tensors:
                    target.copy_(tensors[key].to(device=target.device, dtype=target.dtype))
            router = getattr(layer, "router", None)
            if router is not None and router.tuned_logits is not None:
                router.tuned_logits.copy_(router.logits[router.tuned_task])
    logger.info("loaded %d adapter layers from %s (method %s)", len(layers), directory, saved.method)
    return saved
