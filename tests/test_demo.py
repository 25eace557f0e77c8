import json

import pytest

from tensorpoly_tn.cli import main
from tensorpoly_tn.experiments import ProtocolConfig, build_method_configs, check_results
from tensorpoly_tn.models import build_preset_model


def test_demo_quick_writes_results(tmp_path, capsys):
    out = tmp_path / "run"
    code = main([
        "demo", "--quick", "--methods", "lora", "poly", "--seeds", "3", "--out", str(out),
        "--cache-dir", str(tmp_path / "cache"), "--no-progress",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| lora |" in printed
    assert "| poly |" in printed
    results = json.loads((out / "results.json").read_text())
    check_results(results)
    assert set(results["methods"]) == {"lora", "poly"}
    assert results["methods"]["lora"]["router"] is None
    poly = results["methods"]["poly"]
    assert len(poly["few_shot"]["mean_per_seed"]) == 3
    assert len(poly["router"]["allocation"]) == len(results["tasks"])
    assert 0.0 <= poly["router"]["skill_recovery"]["permutation_accuracy"] <= 1.0
    for name in ("results.md", "allocations.npz", "scores.png", "router-poly.png"):
        assert (out / name).is_file(), name


def test_budgets_are_matched():
    configs = build_method_configs(build_preset_model("tiny"), ["lora", "poly", "tensorpoly-1"], 15, 6, "poly")
    budget = configs["poly"][1]
    for method in ("lora", "tensorpoly-1"):
        assert abs(configs[method][1] - budget) / budget < 0.15, method


def test_protocol_config_json_round_trip():
    config = ProtocolConfig(methods=("lora", "mhr"), few_shot_seeds=(3, 4, 5), k_shot=4)
    assert ProtocolConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"methods": ("lora", "dense")}, r"methods must be a non-empty list of .*, got \['lora', 'dense'\]"),
        ({"methods": ("lora", "lora")}, r"methods must not repeat a name, got \['lora', 'lora'\]"),
        ({"k_shot": 0}, r"k_shot must be an integer >= 1, got 0"),
        ({"router_lr": 0.0}, r"router_lr must be a positive number, got 0.0"),
        ({"few_shot_seeds": ()}, r"few_shot_seeds must be a non-empty list of integers, got \[\]"),
        ({"budget_reference": "big"}, r"budget_reference must be None or one of .*, got 'big'"),
    ],
)
def test_protocol_config_rejects_invalid_values(values, message):
    with pytest.raises(ValueError, match=message):
        ProtocolConfig(**values)


def test_demo_rejects_zero_seeds(tmp_path, capsys):
    code = main(["demo", "--quick", "--seeds", "0", "--out", str(tmp_path)])
    assert code == 2
    assert "--seeds must be at least 1, got 0" in capsys.readouterr().err
