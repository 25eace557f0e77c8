"""A tiny T5 backbone pretrained on generated text, then frozen, and cached on disk.

Adapters in the embedded benchmark are trained on a backbone that already reads and writes
words, as the real T5 does. The tiny preset is first trained in full for a short while on generic
text-to-text tasks (copy a word or a phrase, count letters), none of which is a benchmark skill. The weights are cached under :func:`cache_directory`, keyed by a hash of the
:class:`BackboneConfig`, the preset's architecture and the seed, and written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from .data.example import PromptedExample
from .models import PRESETS, build_preset_model
from .reporting import atomic_write
from .skills.benchmark import random_word
from .training import collate

__all__ = [
    "BackboneConfig",
    "cache_directory",
    "backbone_cache_path",
    "pretraining_examples",
    "pretrain_backbone",
    "load_pretrained_backbone",
]

logger = logging.getLogger(__name__)

CACHE_ENVIRONMENT_VARIABLE = "TENSORPOLY_CACHE"
# Bumped whenever the pretraining data or loop changes, so that old cache entries are not reused.
PRETRAINING_VERSION = 1


@dataclass
class BackboneConfig:
    """Settings of the generic pretraining. Every field is checked in ``__post_init__``."""

    preset: str = field(default="tiny", metadata={"help": "model preset, a key of tensorpoly_tn.models.PRESETS"})
    steps: int = field(default=1500, metadata={"help": "optimizer steps of full-model training"})
    batch_size: int = field(default=32, metadata={"help": "examples per step"})
    lr: float = field(default=3e-3, metadata={"help": "AdamW learning rate, linearly decayed to 0"})
    min_word_length: int = field(default=3, metadata={"help": "shortest generated word, in letters"})
    max_word_length: int = field(default=8, metadata={"help": "longest generated word, in letters"})
    seed: int = field(default=0, metadata={"help": "seed of the initial weights and of the generated text"})

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        for name in ("steps", "batch_size", "min_word_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.max_word_length, int) or self.max_word_length < self.min_word_length:
            raise ValueError(
                f"max_word_length must be an integer >= min_word_length={self.min_word_length}, "
                f"got {self.max_word_length!r}"
            )
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "BackboneConfig":
        values = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown BackboneConfig fields {unknown}; known fields are {sorted(known)}")
        return cls(**values)

    def cache_key(self) -> str:
        """Return a hex digest of the config, the preset's architecture and the pretraining version."""
        payload = {"config": self.to_dict(), "architecture": PRESETS[self.preset], "version": PRETRAINING_VERSION}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def cache_directory() -> Path:
    """Return ``$TENSORPOLY_CACHE`` if set, else ``~/.cache/tensorpoly_tn``."""
    configured = os.environ.get(CACHE_ENVIRONMENT_VARIABLE)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "tensorpoly_tn"


def backbone_cache_path(config: BackboneConfig, cache_dir: str | Path | None = None) -> Path:
    """Return the file that caches the backbone pretrained with ``config``."""
    root = Path(cache_dir) if cache_dir is not None else cache_directory()
    return root / f"backbone-{config.preset}-{config.cache_key()}.safetensors"


def pretraining_examples(n: int, config: BackboneConfig, rng: random.Random) -> list[PromptedExample]:
    """Draw ``n`` generic examples: copy a word, copy a phrase of words, or count a word's letters.

    The three kinds map ``"word: abcde"`` to ``"abcde"``, ``"text: ab cde f"`` to ``"ab cde f"``
    and ``"count: abcde"`` to ``"5"``. None of them is a skill of the embedded benchmark.
    """
    examples = []
    for _ in range(n):
        word = random_word(rng, config.min_word_length, config.max_word_length)
        kind = rng.random()
        if kind < 0.6:
            examples.append(PromptedExample(f"word: {word}", word))
        elif kind < 0.85:
            phrase = " ".join(random_word(rng, 2, config.max_word_length) for _ in range(rng.randint(2, 3)))
            examples.append(PromptedExample(f"text: {phrase}", phrase))
        else:
            examples.append(PromptedExample(f"count: {word}", str(len(word))))
    return examples


def pretrain_backbone(config: BackboneConfig, progress: bool = True) -> tuple[torch.nn.Module, list[float]]:
    """Build the preset with seeded weights and train all of it on :func:`pretraining_examples`.

    Returns
    -------
    tuple
        The trained model (in eval mode) and the loss of every step.
    """
    import transformers

    model = build_preset_model(config.preset, seed=config.seed)
    tokenizer = transformers.ByT5Tokenizer()
    rng = random.Random(f"pretrain-{config.seed}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / config.steps)
    model.train()
    losses = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        for _ in tqdm(range(config.steps), desc="pretraining backbone", disable=not progress, leave=False):
            batch = collate(tokenizer, pretraining_examples(config.batch_size, config, rng))
            batch.pop("task_ids")
            loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
    model.eval()
    return model, losses


def _save_atomically(model: torch.nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Write the weights to a temporary file in the same folder, then rename it over ``path``."""
    # T5 shares the embedding between encoder and decoder, and safetensors rejects shared storage.
    state = {name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()}
    atomic_write(path, lambda stream: stream.write(save(state, metadata=metadata)))


def load_pretrained_backbone(
    config: BackboneConfig | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """Load the pretrained backbone from the cache, pretraining and caching it on a miss.

    Returns
    -------
    tuple
        ``(model, tokenizer, info)``: the T5 in eval mode, the ByT5 tokenizer, and a dict with
        ``path``, ``cached`` (True when read from the cache), ``seconds`` and, after pretraining,
        ``first_loss`` and ``final_loss``.
    """
    import transformers

    config = config or BackboneConfig()
    path = backbone_cache_path(config, cache_dir)
    tokenizer = transformers.ByT5Tokenizer()
    start = time.perf_counter()
    if path.exists():
        model = build_preset_model(config.preset, seed=config.seed)
        state = load_file(str(path))
        missing, unexpected = model.load_state_dict(state, strict=False)
        # Tied encoder/decoder embeddings may be stored once; anything else missing is a broken file.
        if unexpected or any("embed" not in name and "shared" not in name for name in missing):
            raise ValueError(
                f"cached backbone {path} does not match preset {config.preset!r} "
                f"(missing {missing}, unexpected {unexpected}); delete the file to pretrain again"
            )
        model.eval()
        info = {"path": str(path), "cached": True, "seconds": time.perf_counter() - start}
        logger.info("loaded the pretrained backbone from %s", path)
        return model, tokenizer, info

    logger.info("pretraining the %r backbone for %d steps (cache miss: %s)", config.preset, config.steps, path)
    model, losses = pretrain_backbone(config, progress=progress)
    _save_atomically(model, path, {"config": config.to_json(), "final_loss": f"{losses[-1]:.6f}"})
    info = {
        "path": str(path),
        "cached": False,
        "seconds": time.perf_counter() - start,
        "first_loss": losses[0],
        "final_loss": losses[-1],
    }
    logger.info("pretrained the backbone in %.1f s (loss %.3f -> %.3f)", info["seconds"], losses[0], losses[-1])
    return model, tokenizer, info
