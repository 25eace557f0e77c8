"""TensorPoly (mixture of latent experts using tensor products) as explicit tensor networks."""

import logging

from .config import DEFAULT_TARGET_MODULES, METHODS, TensorPolyConfig
from .inject import AdapterReport, adapter_layers, apply_adapters, use_tasks
from .layers import AdapterLinear, LoRALinear, MissingTaskIdsError, TensorPolyLinear

__all__ = [
    "TensorPolyConfig",
    "METHODS",
    "DEFAULT_TARGET_MODULES",
    "AdapterReport",
    "apply_adapters",
    "adapter_layers",
    "use_tasks",
    "AdapterLinear",
    "LoRALinear",
    "TensorPolyLinear",
    "MissingTaskIdsError",
]

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
