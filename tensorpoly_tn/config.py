"""Configuration of the adapters injected into a model."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .tlora import NORMALIZE_CHOICES, check_positive

__all__ = ["TensorPolyConfig", "METHODS", "SELECTOR_NAMES", "DEFAULT_TARGET_MODULES"]

MethodName = Literal["lora", "tlora", "poly", "mhr", "tensorpoly-1", "tensorpoly-2"]
SelectorName = Literal["sigmoid", "relaxed-bernoulli", "straight-through", "uniform", "private"]
#: The built-in methods; :func:`tensorpoly_tn.layers.register_method` can add more.
METHODS: tuple[str, ...] = get_args(MethodName)
#: The built-in selectors; :func:`tensorpoly_tn.routing.register_selector` can add more.
SELECTOR_NAMES: tuple[str, ...] = get_args(SelectorName)
# Methods whose layers have a router, and the ones of them that mix n_skills LoRA modules.
ROUTED_METHODS: tuple[str, ...] = ("poly", "mhr", "tensorpoly-1", "tensorpoly-2")

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

    Methods:

    - ``"lora"``: one shared LoRA.
    - ``"tlora"``: one shared TLoRA.
    - ``"poly"``: n_skills LoRA modules mixed per task.
    - ``"mhr"``: Poly with n_splits routed heads.
    - ``"tensorpoly-1"``: the n_terms of the TLoRA tensor mixed per task.
    - ``"tensorpoly-2"``: the leaves of every order mixed per task, then multiplied.

    Fields a method does not use are ignored by it.
    """

    method: MethodName = field(default="tensorpoly-1", metadata={"help": f"adapter method, one of {METHODS}"})
    rank: int = field(default=8, metadata={"help": "rank r of each factor pair A (d_in, r), B (r, d_out)"})
    n_tasks: int = field(default=1, metadata={"help": "rows of each router (one per task)"})
    n_terms: int = field(default=8, metadata={"help": "K, the tensor-product terms (latent experts) per factor"})
    order: int = field(default=2, metadata={"help": "N, the leaves multiplied per term"})
    normalize: Literal["none", "pairwise"] = field(
        default="pairwise", metadata={"help": "layer norm on products of neighbouring leaves ('pairwise') or none"}
    )
    scaling: float | None = field(default=None, metadata={"help": "factor on the update; None means 1 / rank"})
    selector: SelectorName = field(
        default="sigmoid",
        metadata={"help": f"router selector turning logits into weights, one of {SELECTOR_NAMES}"},
    )
    n_skills: int = field(default=8, metadata={"help": "LoRA modules (skills) per layer for poly and mhr"})
    n_splits: int = field(
        default=1, metadata={"help": "routed heads per skill; 1 for poly, at least 2 for mhr; must divide d_in and d_out"}
    )
    router_only: bool = field(
        default=False,
        metadata={"help": "the '-z' mode: freeze the adapter factors and train only the routers"},
    )
    tuned_task: int | None = field(
        default=None,
        metadata={"help": "with router_only, the one task whose router row is trained; None trains every row"},
    )
    fused_training: bool = field(
        default=True,
        metadata={
            "help": "run the training step of tlora, tensorpoly-1 and tensorpoly-2 as one fused autograd "
            "function; False records every step with autograd (the planner, or factors and bmm for tensorpoly-2)"
        },
    )
    target_modules: tuple[str, ...] = field(
        default=DEFAULT_TARGET_MODULES, metadata={"help": "regexes matched in full against module names"}
    )

    def __post_init__(self) -> None:
        # Imported here because the registries import the layers, which must not need the config.
        from .layers.registry import get_method_builder
        from .routing import get_selector

        get_method_builder(self.method)
        get_selector(self.selector)
        for name in ("rank", "n_tasks", "n_terms", "order", "n_skills", "n_splits"):
            check_positive(name, getattr(self, name))
        if self.method == "poly" and self.n_splits != 1:
            raise ValueError(
                f"method 'poly' routes whole skills, so n_splits must be 1, got {self.n_splits}; use method='mhr'"
            )
        if self.method == "mhr" and self.n_splits < 2:
            raise ValueError(f"method 'mhr' needs n_splits >= 2 routed heads, got {self.n_splits}; use method='poly'")
        if self.selector == "private":
            experts = self.n_skills if self.method in ("poly", "mhr") else self.n_terms
            if experts != self.n_tasks:
                raise ValueError(
                    f"selector 'private' gives each task its own expert, so the experts ({experts}, from "
                    f"{'n_skills' if self.method in ('poly', 'mhr') else 'n_terms'}) must equal n_tasks ({self.n_tasks})"
                )
        if not isinstance(self.router_only, bool):
            raise ValueError(f"router_only must be True or False, got {self.router_only!r}")
        if self.router_only and self.method not in ROUTED_METHODS:
            raise ValueError(
                f"router_only trains only the routers, but method {self.method!r} has none; "
                f"use one of {ROUTED_METHODS}"
            )
        if self.router_only and self.selector in ("uniform", "private"):
            raise ValueError(
                f"router_only trains only the routers, but selector {self.selector!r} ignores the router "
                "logits; use 'sigmoid', 'relaxed-bernoulli' or 'straight-through'"
            )
        if self.tuned_task is not None:
            if not self.router_only:
                raise ValueError(f"tuned_task={self.tuned_task} needs router_only=True")
            if isinstance(self.tuned_task, bool) or not isinstance(self.tuned_task, int):
                raise ValueError(f"tuned_task must be None or an int task id, got {self.tuned_task!r}")
            if not 0 <= self.tuned_task < self.n_tasks:
                raise ValueError(f"tuned_task must be a task id in [0, {self.n_tasks}), got {self.tuned_task}")
        if not isinstance(self.fused_training, bool):
            raise ValueError(f"fused_training must be True or False, got {self.fused_training!r}")
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
