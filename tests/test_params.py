"""Parameter accounting: closed forms against counted parameters, and the params command."""

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from tensorpoly_tn import METHODS, TensorPolyConfig, apply_adapters
from tensorpoly_tn.accounting import closed_form_count, count_methods, counted_parameters, target_shapes
from tensorpoly_tn.cli import main
from tensorpoly_tn.model_configs import t5_config


def _tiny_t5():
    config = T5Config(
        vocab_size=384, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=2, num_heads=4,
        feed_forward_proj="gated-gelu", decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
        tie_word_embeddings=False,
    )
    with torch.device("meta"):
        return T5ForConditionalGeneration(config)


CASES = [dict(method=method) for method in METHODS] + [
    dict(method="mhr", n_splits=4, order=3),
    dict(method="tensorpoly-1", order=3, selector="uniform"),
    dict(method="poly", selector="private", n_skills=3),
    dict(method="tensorpoly-2", router_only=True),
    dict(method="poly", router_only=True, tuned_task=2),
    dict(method="tensorpoly-1", router_only=True, tuned_task=0),
]


@pytest.mark.parametrize("overrides", CASES, ids=lambda case: "-".join(str(v) for v in case.values()))
def test_closed_form_matches_counted(overrides):
    values = dict(rank=3, n_tasks=3, n_terms=5, n_skills=4, n_splits=2 if overrides["method"] == "mhr" else 1)
    values.update(overrides)
    config = TensorPolyConfig(**values)
    model = _tiny_t5()
    shapes = target_shapes(model, config)
    report = apply_adapters(model, config)
    per_layer = counted_parameters(model)
    assert sorted(per_layer) == sorted(shapes)
    assert report.trainable_parameters == sum(per_layer.values())
    assert closed_form_count(config, list(shapes.values())) == report.trainable_parameters


def test_t5_large_config_sizes():
    config = t5_config("t5-large-lm-adapt")
    assert (config.d_model, config.d_ff, config.num_layers, config.num_heads) == (1024, 2816, 24, 16)


def test_t5_large_lora_count():
    (result,) = count_methods("t5-large-lm-adapt", [TensorPolyConfig(method="lora", rank=1)])
    # An encoder block has q, k, v, o at 1024 + 1024 each and wi_0, wi_1, wo at 1024 + 2816 each.
    # A decoder block adds the 4 cross-attention linears.
    encoder_block = 4 * 2048 + 3 * 3840
    decoder_block = 8 * 2048 + 3 * 3840
    assert result.counted == result.closed_form == 24 * encoder_block + 24 * decoder_block


def test_params_command_prints_each_method(capsys):
    assert main(["params", "--model-config", "t5-large-lm-adapt", "--methods", "lora", "tensorpoly-2", "--rank", "1",
                 "--per-layer"]) == 0
    output = capsys.readouterr().out
    assert "lora" in output
    assert "tensorpoly-2" in output
    assert " yes" in output
    assert " NO" not in output
    assert "decoder.block.23.layer.2.DenseReluDense.wo" in output


def test_unknown_model_config_raises():
    with pytest.raises(ValueError, match=r"unknown model config 't5-huge'; known model configs are \["):
        t5_config("t5-huge")
