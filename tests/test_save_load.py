"""save_adapters / load_adapters: round trip, no pickle, and the mismatch messages."""

import json

import pytest
import torch
from tiny_models import tiny_t5

from tensorpoly_tn import (
    METHODS,
    TensorPolyConfig,
    add_tasks,
    adapter_layers,
    apply_adapters,
    load_adapters,
    save_adapters,
    train_routers_only,
    use_tasks,
)
from tensorpoly_tn.io import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME


def _tiny_t5(seed=0):
    return tiny_t5(seed)


def _config(method="tensorpoly-1", **overrides):
    values = dict(method=method, n_tasks=3, rank=2, n_terms=3, n_skills=3, n_splits=2 if method == "mhr" else 1)
    values.update(overrides)
    return TensorPolyConfig(**values)


def _adapted(config, seed=0):
    model = _tiny_t5()
    apply_adapters(model, config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.normal_(0.0, 0.5)
    return model


def _logits(model, task):
    torch.manual_seed(0)
    ids = torch.randint(3, 300, (2, 6))
    with torch.no_grad(), use_tasks(model, task):
        return model(input_ids=ids, decoder_input_ids=ids[:, :3]).logits


@pytest.mark.parametrize("method", METHODS)
def test_round_trip_into_bare_model(method, tmp_path):
    model = _adapted(_config(method))
    save_adapters(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME])
    fresh = _tiny_t5()
    loaded_config = load_adapters(fresh, tmp_path)
    assert loaded_config == _config(method)
    torch.testing.assert_close(_logits(fresh, [0, 2]), _logits(model, [0, 2]), rtol=0, atol=0)


def test_round_trip_into_adapted_model(tmp_path):
    model = _adapted(_config("poly"), seed=1)
    save_adapters(model, tmp_path)
    other = _adapted(_config("poly"), seed=2)
    load_adapters(other, tmp_path)
    torch.testing.assert_close(_logits(other, 1), _logits(model, 1), rtol=0, atol=0)


def test_saved_files_are_json_and_safetensors(tmp_path):
    save_adapters(_adapted(_config("mhr")), tmp_path)
    header = json.loads((tmp_path / ADAPTER_CONFIG_NAME).read_text())
    assert header["format"] == "tensorpoly_tn-adapters"
    assert header["config"]["method"] == "mhr"
    layer = header["layers"]["encoder.block.0.layer.0.SelfAttention.q"]
    assert layer["tensors"]["poly_lora_a"] == [2, 3, 16, 2]
    assert layer["tensors"]["router.logits"] == [3, 6]
    assert (tmp_path / ADAPTER_WEIGHTS_NAME).read_bytes()[8:9] == b"{"  # safetensors JSON header, not a pickle


def test_tuned_row_is_saved_in_the_logits(tmp_path):
    model = _adapted(_config("tensorpoly-2"))
    new_task = add_tasks(model)
    train_routers_only(model, new_task)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                parameter.add_(1.0)
    expected = _logits(model, new_task)
    save_adapters(model, tmp_path)
    fresh = _tiny_t5()
    assert load_adapters(fresh, tmp_path).n_tasks == 4
    torch.testing.assert_close(_logits(fresh, new_task), expected, rtol=0, atol=0)


def test_method_mismatch_raises(tmp_path):
    save_adapters(_adapted(_config("poly")), tmp_path)
    with pytest.raises(ValueError, match="the saved adapters use method 'poly' but the model's adapters use 'tensorpoly-1'"):
        load_adapters(_adapted(_config("tensorpoly-1")), tmp_path)


def test_task_count_mismatch_raises(tmp_path):
    save_adapters(_adapted(_config(n_tasks=3)), tmp_path)
    with pytest.raises(ValueError, match="the saved adapters have 3 tasks but the model's routers have 4"):
        load_adapters(_adapted(_config(n_tasks=4)), tmp_path)


def test_shape_mismatch_raises(tmp_path):
    save_adapters(_adapted(_config(rank=2)), tmp_path)
    with pytest.raises(ValueError, match=r"'encoder\.block\.0\.layer\.0\.SelfAttention\.q\.leaves_a' has shape "
                       r"\(2, 3, 2, 6\) in the file but \(2, 3, 4, 6\) in the model"):
        load_adapters(_adapted(_config(rank=4)), tmp_path)


def test_layer_mismatch_raises(tmp_path):
    save_adapters(_adapted(_config()), tmp_path)
    fewer = _adapted(_config(target_modules=(r".*\.SelfAttention\.q",)))
    with pytest.raises(ValueError, match=r"adapt different layers: missing from the file \[\] \(0 in all\), "
                       r"not in the model \['decoder\.block\.0\.layer\.0\.SelfAttention\.k'"):
        load_adapters(fewer, tmp_path)


def test_missing_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a saved adapter directory"):
        load_adapters(_tiny_t5(), tmp_path)


def test_save_without_adapters_raises(tmp_path):
    with pytest.raises(ValueError, match="the model has no adapter layers to save"):
        save_adapters(_tiny_t5(), tmp_path)


def test_all_layers_saved(tmp_path):
    model = _adapted(_config("lora"))
    save_adapters(model, tmp_path)
    header = json.loads((tmp_path / ADAPTER_CONFIG_NAME).read_text())
    assert sorted(header["layers"]) == sorted(adapter_layers(model))
