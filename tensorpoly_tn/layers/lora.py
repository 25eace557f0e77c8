"""Plain LoRA: one shared pair of factors, the dense baseline."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..planner.adapters import lora_update
from .base import AdapterLinear

__all__ = ["LoRALinear"]


class LoRALinear(AdapterLinear):
    """``base(x) + scaling * x A B`` with one A (d_in, rank) and one B (rank, d_out) for all tasks.

    A starts as Kaiming-uniform and B as zeros, so the adapted layer equals the base layer at step 0.
    """

    routed = False
    method = "lora"

    def __init__(self, base_layer: nn.Linear, rank: int, scaling: float | None = None) -> None:
        super().__init__(base_layer, rank, scaling)
        weight = base_layer.weight
        self.lora_a = nn.Parameter(torch.empty(self.in_features, rank, dtype=weight.dtype, device=weight.device))
        self.lora_b = nn.Parameter(torch.zeros(rank, self.out_features, dtype=weight.dtype, device=weight.device))
        nn.init.kaiming_uniform_(self.lora_a.T, a=math.sqrt(5))

    def factors(self, task_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return A (1, d_in, rank) and B (1, rank, d_out), shared by every task."""
        return self.lora_a.unsqueeze(0), self.lora_b.unsqueeze(0)

    def update(self, inputs: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Return ``x A B`` (batch, seq, d_out) for ``inputs`` (batch, seq, d_in), planned by :mod:`tensorpoly_tn.planner`."""
        return lora_update(inputs, self.lora_a.to(inputs.dtype), self.lora_b.to(inputs.dtype))
