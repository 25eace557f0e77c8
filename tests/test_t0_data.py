"""Tests for the T0 held-out task registry, the few-shot files, the offline split and the hub fallback."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from tensorpoly_tn.data import (
    HELDOUT_TASKS,
    TASK_SPECS,
    DataNotFoundError,
    HubUnavailableError,
    few_shot_seeds,
    get_task,
    load_few_shot,
    load_hub_validation,
    offline_split,
    read_jsonl,
    resolve_data_dir,
    sample_few_shot_from_hub,
)
from tensorpoly_tn.data import t0 as t0_module

from data_paths import REAL_DATA as SHARED_DATA  # noqa: E402


@pytest.fixture
def shared_data_dir() -> Path:
    if not (SHARED_DATA / "t0" / "few_shot").is_dir():
        pytest.skip(f"real few-shot data not found at {SHARED_DATA}")
    return SHARED_DATA


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def rte_row(idx: int, label: int = 0) -> dict:
    return {"premise": f"premise {idx}", "hypothesis": f"hypothesis {idx}", "idx": idx, "label": label}


# --- registry and labels -------------------------------------------------------------


def test_registry_covers_heldout_tasks():
    assert tuple(TASK_SPECS) == HELDOUT_TASKS
    assert len(HELDOUT_TASKS) == 11


@pytest.mark.parametrize(
    ("task", "k", "hf_path", "hf_subset", "promptsource_dir"),
    [
        ("anli-r1", 50, "anli", None, "anli"),
        ("anli-r3", 50, "anli", None, "anli"),
        ("cb", 32, "super_glue", "cb", "super_glue/cb"),
        ("rte", 32, "super_glue", "rte", "super_glue/rte"),
        ("copa", 32, "super_glue", "copa", "super_glue/copa"),
        ("h-swag", 20, "hellaswag", None, "hellaswag"),
        ("storycloze", 70, "story_cloze", "2016", "story_cloze/2016"),
        ("wic", 32, "super_glue", "wic", "super_glue/wic"),
        ("wsc", 32, "super_glue", "wsc.fixed", "super_glue/wsc.fixed"),
        ("winogrande", 50, "winogrande", "winogrande_xl", "winogrande/winogrande_xl"),
    ],
)
def test_task_spec_fields(task, k, hf_path, hf_subset, promptsource_dir):
    spec = get_task(task)
    assert spec.k == k
    assert spec.hf_path == hf_path
    assert spec.hf_subset == hf_subset
    assert spec.promptsource_dir == promptsource_dir


def test_anli_rounds_use_their_own_splits():
    assert get_task("anli-r2").hub_train_split == "train_r2"
    assert get_task("anli-r2").hub_eval_split == "dev_r2"


def test_get_task_unknown_lists_known():
    with pytest.raises(ValueError, match=r"unknown T0 held-out task 'boolq'; known tasks: anli-r1, .*winogrande"):
        get_task("boolq")


@pytest.mark.parametrize(
    ("task", "example", "expected"),
    [
        ("storycloze", {"answer_right_ending": 2}, 1),
        ("storycloze", {"answer_right_ending": 1}, 0),
        ("winogrande", {"answer": "1"}, 0),
        ("winogrande", {"answer": "2"}, 1),
        ("h-swag", {"label": "3"}, 3),
        ("h-swag", {"label": 2}, 2),
        ("anli-r1", {"label": 2}, 2),
        ("cb", {"label": 1}, 1),
        ("rte", {"label": 1}, 1),
        ("copa", {"label": 0}, 0),
        ("wic", {"label": 1}, 1),
        ("wsc", {"label": 0}, 0),
    ],
)
def test_label_function_hand_checked(task, example, expected):
    assert get_task(task).label(example) == expected


def test_label_out_of_range_rejected():
    with pytest.raises(ValueError, match=r"storycloze example has answer_right_ending=3.*expected one of \[1, 2\]"):
        get_task("storycloze").label({"answer_right_ending": 3})
    with pytest.raises(ValueError, match=r"winogrande example has answer=''.*expected one of \[1, 2\]"):
        get_task("winogrande").label({"answer": ""})


def test_label_missing_field_rejected():
    with pytest.raises(ValueError, match=r"rte example has no 'label' field.*fields present: \['premise'\]"):
        get_task("rte").label({"premise": "p"})


# --- data folder lookup --------------------------------------------------------------


def test_resolve_data_dir_argument_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORPOLY_DATA", str(tmp_path / "elsewhere"))
    assert resolve_data_dir(tmp_path) == tmp_path


def test_resolve_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORPOLY_DATA", str(tmp_path))
    assert resolve_data_dir() == tmp_path


def test_resolve_data_dir_cwd_fallback(tmp_path, monkeypatch):
    monkeypatch.delenv("TENSORPOLY_DATA", raising=False)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    assert resolve_data_dir() == (tmp_path / "shared" / "data").resolve()


def test_resolve_data_dir_missing_argument(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataNotFoundError, match=r"nope' from the data_dir argument does not exist; pass --data-dir"):
        resolve_data_dir(missing)


def test_resolve_data_dir_nothing_found(tmp_path, monkeypatch):
    monkeypatch.delenv("TENSORPOLY_DATA", raising=False)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(t0_module, "_repository_root", lambda: tmp_path / "repo")
    with pytest.raises(DataNotFoundError) as info:
        resolve_data_dir()
    message = str(info.value)
    assert "cwd/../shared/data" in message
    assert "repo/../shared/data" in message
    assert "--data-dir" in message
    assert "TENSORPOLY_DATA" in message
    assert isinstance(info.value, FileNotFoundError)


# --- JSONL and few-shot files --------------------------------------------------------


def test_read_jsonl_skips_blank_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]


def test_read_jsonl_malformed_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl, line 3: invalid JSON"):
        read_jsonl(path)


def test_read_jsonl_non_object_line(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"list\.jsonl, line 2: expected a JSON object, got list"):
        read_jsonl(path)


def write_rte_seeds(root: Path, seeds: dict[int, list[dict]]) -> None:
    for seed, rows in seeds.items():
        write_jsonl(root / "t0" / "few_shot" / "rte" / "32_shot" / f"{seed}_seed.jsonl", rows)


def test_few_shot_seeds_sorted(tmp_path):
    write_rte_seeds(tmp_path, {42: [rte_row(1)], 7: [rte_row(2)], 100: [rte_row(3)]})
    (tmp_path / "t0" / "few_shot" / "rte" / "32_shot" / "notes.txt").write_text("ignored")
    assert few_shot_seeds("rte", tmp_path) == [7, 42, 100]


def test_load_few_shot_missing_seed(tmp_path):
    write_rte_seeds(tmp_path, {0: [rte_row(1)], 1: [rte_row(2)], 7: [rte_row(3)]})
    with pytest.raises(DataNotFoundError, match=r"rte/32_shot/5_seed\.jsonl'.*available seeds: \[0, 1, 7\]"):
        load_few_shot("rte", tmp_path, seed=5)


def test_few_shot_seeds_missing_task_folder(tmp_path):
    write_rte_seeds(tmp_path, {0: [rte_row(1)]})
    with pytest.raises(DataNotFoundError, match=r"few-shot folder '.*cb/32_shot' of task 'cb' does not exist"):
        few_shot_seeds("cb", tmp_path)


def test_tfew_layout_accepted(tmp_path):
    write_jsonl(tmp_path / "few_shot" / "rte" / "32_shot" / "3_seed.jsonl", [rte_row(9)])
    assert load_few_shot("rte", tmp_path, seed=3) == [rte_row(9)]


def test_no_few_shot_folder(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"no few-shot folder in data folder .*t0/few_shot.*few_shot'"):
        few_shot_seeds("rte", tmp_path)


# --- offline split -------------------------------------------------------------------


def test_offline_split_hand_counted(tmp_path):
    # seed 0 trains on rows 1-3; seed 1 adds rows 4, 5 and repeats 2; seed 2 repeats 4
    # and 1 and adds 6. Hand count: evaluation = rows 4, 5, 6.
    write_rte_seeds(
        tmp_path,
        {
            0: [rte_row(1), rte_row(2), rte_row(3)],
            1: [rte_row(4), rte_row(2), rte_row(5)],
            2: [rte_row(4), rte_row(1), rte_row(6)],
        },
    )
    train, evaluation = offline_split("rte", tmp_path, train_seed=0)
    assert [row["idx"] for row in train] == [1, 2, 3]
    assert [row["idx"] for row in evaluation] == [4, 5, 6]


def test_offline_split_compares_full_content(tmp_path):
    # Same idx but a different label is a different example.
    write_rte_seeds(tmp_path, {0: [rte_row(1, label=0)], 1: [rte_row(1, label=1)]})
    _, evaluation = offline_split("rte", tmp_path, train_seed=0)
    assert evaluation == [rte_row(1, label=1)]


def test_offline_split_key_order_ignored(tmp_path):
    reordered = dict(reversed(list(rte_row(1).items())))
    write_rte_seeds(tmp_path, {0: [rte_row(1)], 1: [reordered, rte_row(2)]})
    _, evaluation = offline_split("rte", tmp_path, train_seed=0)
    assert evaluation == [rte_row(2)]


def test_offline_split_other_train_seed(tmp_path):
    write_rte_seeds(tmp_path, {0: [rte_row(1), rte_row(2)], 1: [rte_row(2), rte_row(3)], 5: [rte_row(4)]})
    train, evaluation = offline_split("rte", tmp_path, train_seed=1)
    assert [row["idx"] for row in train] == [2, 3]
    assert [row["idx"] for row in evaluation] == [1, 4]


def test_offline_split_single_seed_rejected(tmp_path):
    write_rte_seeds(tmp_path, {0: [rte_row(1)]})
    with pytest.raises(ValueError, match=r"offline split of task 'rte' with train_seed=0 has no evaluation examples"):
        offline_split("rte", tmp_path, train_seed=0)


# --- real data -----------------------------------------------------------------------


def test_real_seed_files_have_k_examples(shared_data_dir):
    for task in HELDOUT_TASKS:
        seeds = few_shot_seeds(task, shared_data_dir)
        assert {0, 1, 32, 42} <= set(seeds), task
        for seed in seeds:
            assert len(load_few_shot(task, shared_data_dir, seed)) == get_task(task).k, (task, seed)


def test_real_rte_seeds(shared_data_dir):
    assert few_shot_seeds("rte", shared_data_dir) == [0, 1, 32, 42, 100]


def test_real_labels_match_stored_label(shared_data_dir):
    # T-Few stored a 0-based "label" beside the original answer fields.
    for task in ("storycloze", "winogrande"):
        for example in load_few_shot(task, shared_data_dir, 0):
            assert get_task(task).label(example) == example["label"], task


def test_real_offline_split(shared_data_dir):
    for task in ("rte", "copa", "storycloze"):
        train, evaluation = offline_split(task, shared_data_dir, train_seed=0)
        train_keys = {json.dumps(row, sort_keys=True) for row in train}
        eval_keys = [json.dumps(row, sort_keys=True) for row in evaluation]
        other_keys = set()
        for seed in few_shot_seeds(task, shared_data_dir):
            if seed != 0:
                other_keys |= {json.dumps(row, sort_keys=True) for row in load_few_shot(task, shared_data_dir, seed)}
        assert train_keys.isdisjoint(eval_keys), task
        assert len(eval_keys) == len(set(eval_keys)), task
        assert len(eval_keys) == len(other_keys - train_keys), task


# --- hub fallback --------------------------------------------------------------------


def test_hub_unavailable_offline(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    huggingface_constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_constants, "HF_HUB_OFFLINE", True, raising=False)
    expected = r"could not load data set super_glue \(rte\), split 'validation'.*--data-dir"
    with pytest.raises(HubUnavailableError, match=expected):
        load_hub_validation("rte", cache_dir=tmp_path)
    with pytest.raises(HubUnavailableError, match=r"story_cloze is not downloadable from the hub"):
        sample_few_shot_from_hub("storycloze", seed=0, cache_dir=tmp_path)


def fake_datasets(load_dataset) -> types.ModuleType:
    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    return module


def test_hub_error_keeps_original(monkeypatch):
    def fail_to_connect(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(fail_to_connect))
    with pytest.raises(HubUnavailableError, match=r"task 'cb': ConnectionError: no route to host; pass --data-dir"):
        load_hub_validation("cb")


def test_hub_without_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(HubUnavailableError, match=r"'datasets' package is not installed.*tensorpoly_tn\[hub\]"):
        sample_few_shot_from_hub("wic", seed=1)


def test_hub_sample_seeded_without_replacement(monkeypatch):
    rows = [{"word": f"w{i}", "label": i % 2} for i in range(40)]
    requests = []

    def serve(path, subset, split, **kwargs):
        requests.append((path, subset, split))
        return rows

    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(serve))
    first = sample_few_shot_from_hub("wic", seed=3, k=10)
    second = sample_few_shot_from_hub("wic", seed=3, k=10)
    expected = [rows[int(i)] for i in np.random.default_rng(3).choice(40, size=10, replace=False)]
    assert first == expected
    assert first == second
    assert len({row["word"] for row in first}) == 10
    assert requests[0] == ("super_glue", "wic", "train")
    with pytest.raises(ValueError, match=r"k=41 exceeds the 40 examples of wic split 'train'"):
        sample_few_shot_from_hub("wic", seed=3, k=41)
    with pytest.raises(ValueError, match=r"k must be a positive int, got 0"):
        sample_few_shot_from_hub("wic", seed=3, k=0)
