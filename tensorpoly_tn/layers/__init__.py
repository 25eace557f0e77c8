"""Adapter layers: each wraps a frozen ``nn.Linear``."""

from .base import AdapterLinear, MissingTaskIdsError
from .lora import LoRALinear
from .tensorpoly import TensorPolyLinear

__all__ = ["AdapterLinear", "MissingTaskIdsError", "LoRALinear", "TensorPolyLinear"]
