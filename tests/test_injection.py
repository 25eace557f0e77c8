"""apply_adapters on a tiny T5: which linears change, and that the rest stays identical and frozen."""

import re

import pytest
import torch
from tiny_models import tiny_t5

from tensorpoly_tn import TensorPolyConfig, TensorPolyLinear, adapter_layers, apply_adapters, use_tasks


def _tiny_t5(seed=0):
    return tiny_t5(seed, d_ff=48)


EXPECTED = re.compile(r".*\.(SelfAttention|EncDecAttention)\.(q|k|v|o)|.*\.DenseReluDense\.(wi_0|wi_1|wo)")


def test_only_matched_linears_are_replaced():
    model = _tiny_t5()
    original = {name: p.detach().clone() for name, p in model.named_parameters()}
    linear_names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    report = apply_adapters(model, TensorPolyConfig(n_tasks=2))

    expected = [n for n in linear_names if EXPECTED.fullmatch(n)]
    assert sorted(report.replaced) == sorted(expected)
    # 2 encoder blocks x (4 attention + 3 feed-forward) + 2 decoder blocks x (8 attention + 3 feed-forward)
    assert len(expected) == 36
    assert sorted(adapter_layers(model)) == sorted(expected)
    assert "lm_head" not in report.replaced

    for name, parameter in model.named_parameters():
        is_adapter = "leaves_" in name or ".router." in name
        assert parameter.requires_grad == is_adapter, name
        if not is_adapter:
            old_name = name.replace(".base_layer.", ".")
            assert torch.equal(parameter, original[old_name]), name


def test_trainable_count_matches_parameters():
    model = _tiny_t5()
    config = TensorPolyConfig(n_tasks=2, rank=4, n_terms=3, order=2)
    report = apply_adapters(model, config)
    expected = 0
    for layer in adapter_layers(model).values():
        assert isinstance(layer, TensorPolyLinear)
        # leaves of A and B, then the router's task x term logits
        expected += 2 * 3 * 4 * (layer.leaf_in + layer.leaf_out) + 2 * 3
    assert report.trainable_parameters == expected
    assert "trainable parameters" in str(report)


def test_adapted_model_equals_base_at_start():
    base = _tiny_t5(seed=3)
    adapted = _tiny_t5(seed=3)
    apply_adapters(adapted, TensorPolyConfig(n_tasks=2, order=3))
    ids = torch.randint(3, 300, (2, 9))
    labels = torch.randint(3, 300, (2, 4))
    # no_grad for both: CPU attention kernels can differ in rounding when inputs require grad.
    with torch.no_grad(), use_tasks(adapted, [0, 1]):
        adapted_logits = adapted(input_ids=ids, labels=labels).logits
    with torch.no_grad():
        base_logits = base(input_ids=ids, labels=labels).logits
    torch.testing.assert_close(adapted_logits, base_logits, rtol=0, atol=0)


def test_no_match_raises():
    with pytest.raises(ValueError, match="no nn.Linear module name matches"):
        apply_adapters(_tiny_t5(), TensorPolyConfig(target_modules=(r".*\.nothing",)))


def test_apply_twice_raises():
    model = _tiny_t5()
    apply_adapters(model, TensorPolyConfig())
    with pytest.raises(ValueError, match="already has adapters"):
        apply_adapters(model, TensorPolyConfig())


def test_config_json_round_trip():
    config = TensorPolyConfig(method="lora", rank=3, n_tasks=5)
    assert TensorPolyConfig.from_json(config.to_json()) == config


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="method must be one of"):
        TensorPolyConfig(method="adapter")
    with pytest.raises(ValueError, match="order must be an integer >= 1, got 0"):
        TensorPolyConfig(order=0)
    with pytest.raises(ValueError, match="unknown TensorPolyConfig fields"):
        TensorPolyConfig.from_dict({"ranks": 2})
