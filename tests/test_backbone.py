import pytest
import torch

from tensorpoly_tn.backbone import (
    BackboneConfig,
    backbone_cache_path,
    cache_directory,
    load_pretrained_backbone,
)

TINY = BackboneConfig(steps=2, batch_size=4)


def test_cache_miss_pretrains_then_hit_reads(tmp_path):
    model, _, info = load_pretrained_backbone(TINY, cache_dir=tmp_path, progress=False)
    assert info["cached"] is False
    assert backbone_cache_path(TINY, tmp_path).is_file()
    again, _, info_again = load_pretrained_backbone(TINY, cache_dir=tmp_path, progress=False)
    assert info_again["cached"] is True
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    # Only the finished file is left: the temporary file was renamed over it.
    assert sorted(p.name for p in tmp_path.iterdir()) == [backbone_cache_path(TINY, tmp_path).name]


def test_pretraining_changes_the_weights(tmp_path):
    from tensorpoly_tn.models import build_preset_model

    model, _, _ = load_pretrained_backbone(TINY, cache_dir=tmp_path, progress=False)
    initial = build_preset_model("tiny", seed=0)
    assert not torch.equal(model.lm_head.weight, initial.lm_head.weight)


def test_cache_key_depends_on_config_and_seed():
    keys = {BackboneConfig().cache_key(), BackboneConfig(seed=1).cache_key(), BackboneConfig(steps=7).cache_key()}
    assert len(keys) == 3
    assert BackboneConfig().cache_key() == BackboneConfig().cache_key()


def test_cache_directory_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TENSORPOLY_CACHE", str(tmp_path / "cache"))
    assert cache_directory() == tmp_path / "cache"
    monkeypatch.delenv("TENSORPOLY_CACHE")
    assert cache_directory().name == "tensorpoly_tn"


def test_config_json_round_trip():
    config = BackboneConfig(steps=5, seed=3)
    assert BackboneConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"preset": "huge"}, r"preset must be one of \['tiny'\], got 'huge'"),
        ({"steps": 0}, r"steps must be an integer >= 1, got 0"),
        ({"lr": -1.0}, r"lr must be a positive number, got -1.0"),
        ({"max_word_length": 2}, r"max_word_length must be an integer >= min_word_length=3, got 2"),
    ],
)
def test_config_rejects_invalid_values(values, message):
    with pytest.raises(ValueError, match=message):
        BackboneConfig(**values)
