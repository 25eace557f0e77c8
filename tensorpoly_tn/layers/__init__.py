"""Adapter layers: each wraps a frozen ``nn.Linear``."""

from .base import AdapterLinear, MissingTaskIdsError
from .lora import LoRALinear
from .poly import MHRLinear, PolyLinear
from .registry import METHOD_BUILDERS, get_method_builder, register_method
from .tensorpoly import TensorPolyLinear
from .tensorpoly2 import TensorPoly2Linear
from .tlora import TLoRALinear

__all__ = [
    "AdapterLinear",
    "MissingTaskIdsError",
    "LoRALinear",
    "TLoRALinear",
    "PolyLinear",
    "MHRLinear",
    "TensorPolyLinear",
    "TensorPoly2Linear",
    "METHOD_BUILDERS",
    "register_method",
    "get_method_builder",
]
