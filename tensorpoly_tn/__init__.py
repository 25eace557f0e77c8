"""TensorPoly (mixture of latent experts using tensor products) as explicit tensor networks."""

import logging

from .config import DEFAULT_TARGET_MODULES, METHODS, TensorPolyConfig
from .inject import (
    AdapterReport,
    adapter_layers,
    add_tasks,
    apply_adapters,
    finish_router_tuning,
    train_routers_only,
    use_tasks,
)
from .io import load_adapters, save_adapters
from .layers import (
    AdapterLinear,
    LoRALinear,
    MHRLinear,
    MissingTaskIdsError,
    PolyLinear,
    TensorPoly2Linear,
    TensorPolyLinear,
    TLoRALinear,
)
from .merge import merge, merge_into_base, task_factors
from .peft_export import export_peft_lora

__all__ = [
    "TensorPolyConfig",
    "METHODS",
    "DEFAULT_TARGET_MODULES",
    "AdapterReport",
    "apply_adapters",
    "adapter_layers",
    "use_tasks",
    "add_tasks",
    "train_routers_only",
    "finish_router_tuning",
    "merge",
    "merge_into_base",
    "task_factors",
    "export_peft_lora",
    "save_adapters",
    "load_adapters",
    "AdapterLinear",
    "LoRALinear",
    "TLoRALinear",
    "PolyLinear",
    "MHRLinear",
    "TensorPolyLinear",
    "TensorPoly2Linear",
    "MissingTaskIdsError",
]

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
