"""T5 architectures written in the package, so parameter counts need no download.

Values are those of the Hugging Face ``config.json`` of each LM-adapted T5 v1.1 checkpoint
(``google/t5-base-lm-adapt``, ``google/t5-large-lm-adapt``). Only the sizes matter here: the models
built from them have random or meta weights.
"""

from __future__ import annotations

import copy
from typing import Any

import transformers

__all__ = ["MODEL_CONFIGS", "t5_config"]

_T5_V1_1_COMMON: dict[str, Any] = {
    "vocab_size": 32128,
    "feed_forward_proj": "gated-gelu",
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "dropout_rate": 0.1,
    "layer_norm_epsilon": 1e-6,
    "tie_word_embeddings": False,
    "decoder_start_token_id": 0,
    "pad_token_id": 0,
    "eos_token_id": 1,
}

MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "t5-base-lm-adapt": {
        **_T5_V1_1_COMMON,
        "d_model": 768,
        "d_kv": 64,
        "d_ff": 2048,
        "num_heads": 12,
        "num_layers": 12,
        "num_decoder_layers": 12,
    },
    "t5-large-lm-adapt": {
        **_T5_V1_1_COMMON,
        "d_model": 1024,
        "d_kv": 64,
        "d_ff": 2816,
        "num_heads": 16,
        "num_layers": 24,
        "num_decoder_layers": 24,
    },
}


def t5_config(name: str) -> transformers.T5Config:
    """Return the ``T5Config`` of the architecture ``name``, a key of :data:`MODEL_CONFIGS`."""
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model config {name!r}; known model configs are {sorted(MODEL_CONFIGS)}")
    return transformers.T5Config(**copy.deepcopy(MODEL_CONFIGS[name]))
