"""A small random T5 for the tests: built from a config, so nothing is downloaded."""

import torch
from transformers import T5Config, T5ForConditionalGeneration


def tiny_t5(seed=0, d_ff=64):
    """Return a 2+2-layer T5 (d_model 32, 4 heads) drawn with ``seed``, in eval mode (no dropout)."""
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=384, d_model=32, d_kv=8, d_ff=d_ff, num_layers=2, num_decoder_layers=2, num_heads=4,
        feed_forward_proj="gated-gelu", decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
        tie_word_embeddings=False,
    )
    return T5ForConditionalGeneration(config).eval()
