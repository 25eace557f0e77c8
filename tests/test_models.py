"""Tests of the preset models and of loading named models when the hub is out of reach."""

from __future__ import annotations

import huggingface_hub.constants
import pytest
import torch
import transformers

from tensorpoly_tn.models import (
    PRESETS,
    ModelNotAvailableError,
    build_preset_model,
    describe_model,
    load_model_and_tokenizer,
)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch the Hugging Face Hub to offline mode, so that no test can reach the network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once at import, so the module constant is set as well.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_tiny_preset_builds_offline(offline: None) -> None:
    model, tokenizer = load_model_and_tokenizer(preset="tiny")

    assert isinstance(model, transformers.T5ForConditionalGeneration)
    assert isinstance(tokenizer, transformers.ByT5Tokenizer)
    assert not model.training
    config = model.config
    assert config.vocab_size == len(tokenizer) == 384
    assert (config.decoder_start_token_id, config.pad_token_id, config.eos_token_id) == (0, 0, 1)
    assert config.is_gated_act
    assert not config.scale_decoder_outputs


def test_tiny_preset_unties_only_lm_head() -> None:
    model = build_preset_model("tiny")

    assert model.encoder.embed_tokens.weight is model.shared.weight
    assert model.decoder.embed_tokens.weight is model.shared.weight
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    assert not torch.equal(model.lm_head.weight, model.shared.weight)


def test_saved_preset_loads_from_directory(offline: None, tmp_path) -> None:
    model, tokenizer = load_model_and_tokenizer(preset="tiny", seed=2)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    loaded, loaded_tokenizer = load_model_and_tokenizer(str(tmp_path))

    batch = tokenizer(["round trip"], return_tensors="pt")
    labels = tokenizer(text_target=["yes"], return_tensors="pt").input_ids
    assert loaded_tokenizer("round trip").input_ids == batch.input_ids[0].tolist()
    assert loaded.lm_head.weight.data_ptr() != loaded.shared.weight.data_ptr()
    torch.testing.assert_close(loaded(**batch, labels=labels).logits, model(**batch, labels=labels).logits)


def test_tiny_preset_forward_and_backward() -> None:
    model, tokenizer = load_model_and_tokenizer(preset="tiny")
    model.train()
    batch = tokenizer(["a prompt", "another, longer prompt"], padding=True, return_tensors="pt")
    labels = tokenizer(text_target=["yes", "no"], padding=True, return_tensors="pt").input_ids

    output = model(**batch, labels=labels)
    output.loss.backward()

    assert output.logits.shape == (2, labels.shape[1], 384)
    assert torch.isfinite(output.loss)
    assert model.lm_head.weight.grad is not None


def test_preset_same_seed_same_weights() -> None:
    first = build_preset_model("tiny", seed=3).state_dict()
    second = build_preset_model("tiny", seed=3).state_dict()
    other = build_preset_model("tiny", seed=4).state_dict()

    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name
    assert not torch.equal(first["lm_head.weight"], other["lm_head.weight"])


def test_preset_leaves_global_rng_alone() -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    load_model_and_tokenizer(preset="tiny", seed=11)

    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, "bfloat16"])
def test_preset_dtype(dtype: torch.dtype | str) -> None:
    model, _ = load_model_and_tokenizer(preset="tiny", dtype=dtype)

    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize("dtype", ["int64", "no_such_dtype", 3])
def test_invalid_dtype_rejected(dtype: object) -> None:
    with pytest.raises(ValueError, match=r"dtype must be None, a floating torch.dtype or its name .* got"):
        load_model_and_tokenizer(preset="tiny", dtype=dtype)


def test_unknown_preset_lists_presets() -> None:
    with pytest.raises(ValueError, match=r"unknown preset 'huge', expected one of \['tiny'\]"):
        load_model_and_tokenizer(preset="huge")


@pytest.mark.parametrize(
    "arguments",
    [{}, {"model_name_or_path": "google/t5-base-lm-adapt", "preset": "tiny"}],
    ids=["neither", "both"],
)
def test_name_and_preset_exclusive(arguments: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="pass exactly one of model_name_or_path and preset"):
        load_model_and_tokenizer(**arguments)


def test_missing_hub_model_offline(offline: None) -> None:
    name = "tensorpoly-tn-tests/no-such-model"
    with pytest.raises(ModelNotAvailableError, match=r"--preset tiny") as caught:
        load_model_and_tokenizer(name)

    message = str(caught.value)
    assert repr(name) in message
    assert "could not be loaded from the Hugging Face Hub or from disk" in message
    assert caught.value.model_name == name
    assert isinstance(caught.value.__cause__, OSError)


def test_missing_local_directory(offline: None, tmp_path) -> None:
    path = str(tmp_path / "missing-checkpoint")
    with pytest.raises(ModelNotAvailableError, match="missing-checkpoint.*--preset tiny"):
        load_model_and_tokenizer(path)


def test_describe_model_one_line() -> None:
    model = build_preset_model("tiny")
    total = sum(p.numel() for p in model.parameters())

    text = describe_model(model)

    assert "\n" not in text
    assert f"{total:,} parameters" in text
    assert "2 encoder + 2 decoder layers" in text
    assert "d_model 64" in text


def test_describe_model_without_config() -> None:
    assert describe_model(torch.nn.Linear(3, 2)) == "Linear: 8 parameters (8 trainable)"


def test_presets_are_t5_configs() -> None:
    for name, values in PRESETS.items():
        config = transformers.T5Config(**values)
        assert config.decoder_start_token_id == 0, name
