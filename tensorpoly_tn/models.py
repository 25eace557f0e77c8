"""Build or load the T5 model and tokenizer that experiments adapt.

A named preset is built from a config with seeded random weights and the byte-level ByT5
tokenizer, so it needs no download. A Hugging Face model id or a local directory is loaded
through ``transformers``.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
import transformers
from huggingface_hub.utils import HfHubHTTPError, HFValidationError
from torch import nn

__all__ = [
    "PRESETS",
    "ModelNotAvailableError",
    "load_model_and_tokenizer",
    "build_preset_model",
    "describe_model",
]

logger = logging.getLogger(__name__)

# Errors that mean the model could not be fetched or read. transformers turns most of them into
# OSError (missing files, offline mode, invalid repo ids); the hub's own types are listed in case
# one passes through unchanged.
_LOAD_ERRORS: tuple[type[BaseException], ...] = (OSError, HfHubHTTPError, HFValidationError)

# T5Config keyword arguments per preset. The byte-level ByT5 tokenizer has 384 ids (256 bytes,
# 3 special tokens, 125 extra ids), so vocab_size is 384. Gated GELU and an untied LM head follow
# the T5 v1.1 / LM-adapted checkpoints that T0 starts from.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "vocab_size": 384,
        "d_model": 64,
        "d_kv": 16,
        "d_ff": 128,
        "num_heads": 4,
        "num_layers": 2,
        "num_decoder_layers": 2,
        "feed_forward_proj": "gated-gelu",
        "tie_word_embeddings": False,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        # No dropout: on 2 CPU cores, sampling the attention dropout masks took ~40% of a
        # forward+backward on 8 x 200 tokens, and the preset exists for fast offline runs.
        "dropout_rate": 0.0,
        "decoder_start_token_id": 0,
        "pad_token_id": 0,
        "eos_token_id": 1,
    },
}


class ModelNotAvailableError(RuntimeError):
    """Raised when a model name or path can be loaded neither from the Hugging Face Hub nor from disk.

    Attributes
    ----------
    model_name
        The name or path that failed to load.
    """

    def __init__(self, model_name: str, cause: BaseException) -> None:
        self.model_name = model_name
        super().__init__(
            f"model {model_name!r} could not be loaded from the Hugging Face Hub or from disk "
            f"({type(cause).__name__}: {cause}). Check the name or path and the network connection, "
            "or pass `--preset tiny` (preset='tiny') to run offline with a small randomly initialised T5."
        )


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, dtype, None) if isinstance(dtype, str) else None
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(
            f"dtype must be None, a floating torch.dtype or its name (e.g. 'float32', 'bfloat16'), got {dtype!r}"
        )
    return resolved


def _transformers_at_least(major: int, minor: int) -> bool:
    parts = transformers.__version__.split(".")
    return (int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)) >= (major, minor)


def build_preset_model(preset: str, seed: int = 0) -> nn.Module:
    """Build the T5 of a preset with weights drawn from ``seed``.

    The caller's global torch random state is left as it was.

    Raises
    ------
    ValueError
        When ``preset`` is not a key of :data:`PRESETS`.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}, expected one of {sorted(PRESETS)}")
    values = copy.deepcopy(PRESETS[preset])
    config = transformers.T5Config(**values)
    untied_head = values.get("tie_word_embeddings") is False
    if untied_head:
        # transformers 5.x (checked on 5.25) forces config.tie_word_embeddings to True, and
        # setting it to False unties the encoder and decoder input embeddings too. T5 v1.1
        # checkpoints load with only the LM head untied, so the input embeddings are re-tied below.
        config.tie_word_embeddings = False
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.T5ForConditionalGeneration(config)
    if untied_head:
        model.encoder.set_input_embeddings(model.shared)
        model.decoder.set_input_embeddings(model.shared)
    return model


def load_model_and_tokenizer(
    model_name_or_path: str | None = None,
    preset: str | None = None,
    seed: int = 0,
    dtype: torch.dtype | str | None = None,
) -> tuple[nn.Module, Any]:
    """Load a seq2seq model and its tokenizer from a name or path, or build them from a preset.

    Parameters
    ----------
    model_name_or_path
        A Hugging Face Hub model id (e.g. ``"google/t5-base-lm-adapt"``) or a local directory.
    preset
        A key of :data:`PRESETS`; the model is built with random weights and the ByT5 tokenizer,
        without any download.
    seed
        Seed of the preset's weight initialisation; ignored for a named model.
    dtype
        Floating dtype of the parameters (a ``torch.dtype`` or its name); ``None`` keeps the default.

    Returns
    -------
    tuple
        ``(model, tokenizer)``. The model is in eval mode in both cases, as ``from_pretrained`` returns it.

    Raises
    ------
    ValueError
        When both or neither of ``model_name_or_path`` and ``preset`` are given, for an unknown
        preset, or for an invalid ``dtype``.
    ModelNotAvailableError
        When the named model cannot be read from the Hub or from disk (no network, offline mode,
        unknown name, missing directory).
    """
    if (model_name_or_path is None) == (preset is None):
        raise ValueError(
            "pass exactly one of model_name_or_path and preset, got "
            f"model_name_or_path={model_name_or_path!r} and preset={preset!r}"
        )
    torch_dtype = _resolve_dtype(dtype)

    if preset is not None:
        model = build_preset_model(preset, seed=seed)
        if torch_dtype is not None:
            model = model.to(torch_dtype)
        tokenizer = transformers.ByT5Tokenizer()
        source = f"preset {preset!r} (seed {seed})"
    else:
        # transformers renamed `torch_dtype` to `dtype` in 4.56, and 5.x accepts only `dtype`.
        dtype_keyword = "dtype" if _transformers_at_least(4, 56) else "torch_dtype"
        options = {} if torch_dtype is None else {dtype_keyword: torch_dtype}
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(model_name_or_path)
            model = transformers.AutoModelForSeq2SeqLM.from_pretrained(model_name_or_path, **options)
        except _LOAD_ERRORS as error:
            raise ModelNotAvailableError(model_name_or_path, error) from error
        source = repr(model_name_or_path)

    model.eval()
    logger.info("loaded %s: %s", source, describe_model(model))
    return model, tokenizer


def describe_model(model: nn.Module) -> str:
    """Summarise a model in one line: class, parameters, layers and d_model.

    Layer counts and d_model are read from ``model.config`` (T5 field names) and left out when
    the model has no such config.
    """
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    parts = [f"{type(model).__name__}: {total:,} parameters ({trainable:,} trainable)"]
    config = getattr(model, "config", None)
    encoder_layers = getattr(config, "num_layers", None)
    if encoder_layers is not None:
        decoder_layers = getattr(config, "num_decoder_layers", None) or encoder_layers
        parts.append(f"{encoder_layers} encoder + {decoder_layers} decoder layers")
    d_model = getattr(config, "d_model", None)
    if d_model is not None:
        parts.append(f"d_model {d_model}")
    return ", ".join(parts)
