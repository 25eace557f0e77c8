"""The t0 command end to end on two real tasks, and its errors."""

import json
import os

import pytest

from tensorpoly_tn import reporting
from tensorpoly_tn.cli import main

from data_paths import REAL_DATA as SHARED_DATA  # noqa: E402
needs_data = pytest.mark.skipif(
    not (SHARED_DATA / "t0" / "few_shot").is_dir(), reason=f"T0 few-shot files not found at {SHARED_DATA}"
)

FAST = ["--steps", "2", "--n-seeds", "2", "--max-templates", "2", "--max-eval-examples", "6", "--no-progress"]


@needs_data
def test_t0_run_writes_four_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["t0", "--preset", "tiny", "--method", "tensorpoly-1", "--tasks", "copa,rte",
                 "--data-dir", str(SHARED_DATA), "--out", str(out), *FAST])
    assert code == 0
    for name in ("results.json", "results.md", "config.json", "router.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert {r["task"] for r in results["records"]} == {"copa", "rte"}
    assert {r["seed"] for r in results["records"]} == {0, 1}
    for record in results["records"]:
        assert 0.0 <= record["accuracy"] <= 1.0
        assert record["n_examples"] == 6
    assert len(results["records"]) == 2 * 2 * 2  # tasks x seeds x templates
    for task in ("copa", "rte"):
        assert 0.0 <= results["summary"][task]["mean"] <= 1.0
        assert len(results["allocation"][task]) == 4  # default n_terms
    config = json.loads((out / "config.json").read_text())
    assert config["tasks"] == ["copa", "rte"]
    assert config["training"]["steps"] == 2
    table = (out / "results.md").read_text()
    assert "| copa |" in table
    assert "| rte |" in table
    assert (out / "router.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "results.md" in capsys.readouterr().out


@needs_data
def test_lora_run_writes_no_router_plot(tmp_path):
    out = tmp_path / "run"
    code = main(["t0", "--method", "lora", "--tasks", "cb", "--data-dir", str(SHARED_DATA), "--out", str(out),
                 "--steps", "1", "--n-seeds", "1", "--max-templates", "1", "--max-eval-examples", "4", "--no-progress"])
    assert code == 0
    assert (out / "results.json").is_file()
    assert not (out / "router.png").exists()


def test_unknown_task_lists_known_tasks(tmp_path, capsys):
    code = main(["t0", "--tasks", "copa,boolq_x", "--out", str(tmp_path)])
    assert code == 2
    error = capsys.readouterr().err
    assert "boolq_x" in error
    assert "anli-r1" in error
    assert "winogrande" in error


def test_missing_data_dir_says_where_it_looked(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code = main(["t0", "--tasks", "copa", "--data-dir", str(missing), "--out", str(tmp_path / "run"), *FAST])
    assert code == 2
    error = capsys.readouterr().err
    assert str(missing) in error
    assert "TENSORPOLY_DATA" in error or "--data-dir" in error
    assert not (tmp_path / "run").exists()


def test_bad_sizes_fail_before_work(tmp_path, capsys):
    code = main(["t0", "--tasks", "copa", "--order", "0", "--out", str(tmp_path / "run")])
    assert code == 2
    assert "order must be an integer >= 1, got 0" in capsys.readouterr().err


def test_interrupted_write_leaves_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text('{"old": true}')

    def fail_replace(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(KeyboardInterrupt):
        reporting.atomic_write_json(target, {"new": list(range(1000))})
    assert json.loads(target.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_missing_data_and_hub_error(monkeypatch, capsys, tmp_path):
    from tensorpoly_tn import t0_pipeline
    from tensorpoly_tn.data import DataNotFoundError, HubUnavailableError

    def no_data(data_dir=None):
        raise DataNotFoundError("no T0 data folder found; looked in: /a, /b")

    def no_hub(*args, **kwargs):
        raise HubUnavailableError("could not load data set super_glue")

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not load when no data can be read")

    monkeypatch.setattr(t0_pipeline, "resolve_data_dir", no_data)
    monkeypatch.setattr(t0_pipeline, "sample_few_shot_from_hub", no_hub)
    monkeypatch.setattr(t0_pipeline, "load_model_and_tokenizer", no_model)
    code = main(["t0", "--tasks", "copa", "--out", str(tmp_path / "run"), *FAST])
    assert code == 2
    error = capsys.readouterr().err
    assert "looked in: /a, /b" in error
    assert "hub fallback failed too" in error
    assert not (tmp_path / "run").exists()
