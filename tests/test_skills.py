import itertools

import pytest

from tensorpoly_tn.skills import SKILL_NAMES, SkillsBenchmark, SkillsBenchmarkConfig, apply_skills


def test_apply_skills_canonical_order():
    # drop_vowels (0), then shift (1), then reverse (3), whatever order the indices come in.
    assert apply_skills("abcde", [3, 0, 1]) == "edc"
    assert apply_skills("abcde", [0, 1, 3]) == "edc"
    assert apply_skills("bad", [4, 5]) == "[BAD]"


def test_apply_skills_rejects_bad_index():
    with pytest.raises(ValueError, match=r"skill index must be an integer in \[0, 6\), got 9"):
        apply_skills("abc", [9])


def test_split_keeps_heldout_combinations_unseen():
    bench = SkillsBenchmark()
    train_sets = {task.skills for task in bench.train_tasks}
    for task in bench.heldout_tasks:
        assert task.skills not in train_sets
    trained_skills = set(itertools.chain(*train_sets))
    assert trained_skills == set(range(bench.config.n_skills))
    assert [t.task_id for t in bench.tasks] == list(range(bench.n_tasks))


def test_skill_matrix_matches_tasks():
    bench = SkillsBenchmark()
    matrix = bench.skill_matrix()
    assert matrix.shape == (bench.n_tasks, len(SKILL_NAMES))
    for row, task in zip(matrix, bench.tasks):
        assert set(row.nonzero()[0].tolist()) == set(task.skills)


def test_examples_are_deterministic_and_labelled():
    bench = SkillsBenchmark()
    task = bench.heldout_tasks[0]
    first = bench.examples(task, 20, stream="few-shot", seed=1)
    assert first == bench.examples(task, 20, stream="few-shot", seed=1)
    assert first != bench.examples(task, 20, stream="few-shot", seed=2)
    for example in first:
        word = example.input_text.removeprefix("word: ")
        assert example.target_text == apply_skills(word, task.skills)
        assert example.choices[example.label] == example.target_text
        assert len(set(example.choices)) == bench.config.n_choices
        assert example.task_id == task.task_id


def test_config_json_round_trip():
    config = SkillsBenchmarkConfig(n_skills=5, n_heldout_tasks=3, seed=4)
    assert SkillsBenchmarkConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"n_skills": 9}, r"n_skills must be at most 6 \(the primitive skills defined\), got 9"),
        ({"skills_per_task": 6}, r"skills_per_task must be smaller than n_skills=6, got 6"),
        ({"n_heldout_tasks": 14}, r"n_heldout_tasks must leave at least 2 of the 15 skill sets"),
        ({"n_choices": 1}, r"n_choices must be an integer >= 2, got 1"),
        ({"max_word_length": 2}, r"max_word_length must be an integer >= 4, got 2"),
    ],
)
def test_config_rejects_invalid_values(values, message):
    with pytest.raises(ValueError, match=message):
        SkillsBenchmarkConfig(**values)


def test_config_rejects_unknown_field():
    with pytest.raises(ValueError, match=r"unknown SkillsBenchmarkConfig fields \['colour'\]"):
        SkillsBenchmarkConfig.from_dict({"colour": 1})


def test_examples_reject_foreign_task():
    bench = SkillsBenchmark()
    other = SkillsBenchmark(SkillsBenchmarkConfig(n_skills=4, n_heldout_tasks=1)).tasks[-1]
    with pytest.raises(ValueError, match="is not a task of this benchmark"):
        bench.examples(other, 2)
