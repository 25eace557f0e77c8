"""Configuration of the adapters injected into a model."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from .tlora import NORMALIZE_CHOICES, check_positive

__all__ = ["TensorPolyConfig", "METHODS", "DEFAULT_TARGET_MODULES"]

METHODS: tuple[str, ...] = ("lora", "tensorpoly-1")

# Module names are matched in full (re.fullmatch) against names such as
# "encoder.block.0.layer.0.SelfAttention.q" or "decoder.block.1.layer.2.DenseReluDense.wo".
DEFAULT_TARGET_MODULES: tuple[str, ...] = (
    r".*\.(SelfAttention|EncDecAttention)\.(q|k|v|o)",
    r".*\.DenseReluDense\.(wi|wi_0|wi_1|wo)",
)


@dataclass
class TensorPolyConfig:
    """Which linears to adapt and with which method.

    Every field is checked in ``__post_init__``; :meth:`to_json` and :meth:`from_json` round-trip.
    """

    method: Literal["lora", "tensorpoly-1"] = field(
        default="tensorpoly-1", metadata={"help": f"adapter method, one of {METHODS}"}
    )
    rank: int = field(default=8, metadata={"help": "rank r of each factor pair A (d_in, r), B (r, d_out)"})
    n_tasks: int = field(default=1, metadata={"help": "rows of each router (one per task)"})
    n_terms: int = field(default=8, metadata={"help": "K, the tensor-product terms (latent experts) per factor"})
    order: int = field(default=2, metadata={"help": "N, the leaves multiplied per term"})
    normalize: Literal["none", "pairwise"] = field(
        default="pairwise", metadata={"help": "layer norm on products of neighbouring leaves ('pairwise') or none"}
    )
    scaling: float | None = field(default=None, metadata={"help": "factor on the update; None means 1 / rank"})
    selector: str = field(default="sigmoid", metadata={"help": "router selector turning logits into weights"})
    target_modules: tuple[str, ...] = field(
        default=DEFAULT_TARGET_MODULES, metadata={"help": "regexes matched in full against module names"}
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in ("rank", "n_tasks", "n_terms", "order"):
            check_positive(name, getattr(self, name))
        if self.normalize not in NORMALIZE_CHOICES:
            raise ValueError(f"normalize must be one of {NORMALIZE_CHOICES}, got {self.normalize!r}")
        if isinstance(self.target_modules, str):
            self.target_modules = (self.target_modules,)
        self.target_modules = tuple(self.target_modules)
        if not self.target_modules:
            raise ValueError("target_modules is empty; give at least one regex of module names to adapt")

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["target_modules"] = list(self.target_modules)
        return values

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TensorPolyConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TensorPolyConfig fields {unknown}; known fields are {sorted(known)}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "TensorPolyConfig":
        return cls.from_dict(json.loads(text))
