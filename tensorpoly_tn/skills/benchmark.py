"""The embedded benchmark: tasks that compose primitive skills, with known task x skill structure.

A task applies a set of ``skills_per_task`` skills to a random word. Training tasks and held-out
tasks use different skill sets, so a held-out task's combination is never seen in training,
while every one of its skills is. Prompts carry only the word (``"word: abcde"``): which
operation to apply is known only through the task id, as with the per-task routers.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import string
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..data.example import PromptedExample
from .primitives import SKILLS, VOWELS, apply_skills

__all__ = ["SkillsBenchmarkConfig", "SkillTask", "SkillsBenchmark", "random_word"]

CONSONANTS = "".join(c for c in string.ascii_lowercase if c not in VOWELS)
_MAX_DRAWS = 1000  # words drawn before giving up on one with distinct answer choices


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass
class SkillsBenchmarkConfig:
    """Size and seed of the embedded benchmark. Every field is checked in ``__post_init__``."""

    n_skills: int = field(default=6, metadata={"help": f"primitive skills used, the first n of {len(SKILLS)}"})
    skills_per_task: int = field(default=2, metadata={"help": "skills composed by every task"})
    n_heldout_tasks: int = field(default=4, metadata={"help": "skill sets kept out of training"})
    n_choices: int = field(default=4, metadata={"help": "answer choices per example (1 correct)"})
    min_word_length: int = field(default=4, metadata={"help": "shortest input word, in letters"})
    max_word_length: int = field(default=7, metadata={"help": "longest input word, in letters"})
    seed: int = field(default=0, metadata={"help": "seed of the held-out split and of every example"})

    def __post_init__(self) -> None:
        _check_int("n_skills", self.n_skills, 2)
        if self.n_skills > len(SKILLS):
            raise ValueError(f"n_skills must be at most {len(SKILLS)} (the primitive skills defined), got {self.n_skills}")
        _check_int("skills_per_task", self.skills_per_task, 1)
        if self.skills_per_task >= self.n_skills:
            raise ValueError(
                f"skills_per_task must be smaller than n_skills={self.n_skills}, got {self.skills_per_task}"
            )
        _check_int("n_heldout_tasks", self.n_heldout_tasks, 1)
        n_sets = len(list(itertools.combinations(range(self.n_skills), self.skills_per_task)))
        if self.n_heldout_tasks > n_sets - 2:
            raise ValueError(
                f"n_heldout_tasks must leave at least 2 of the {n_sets} skill sets for training, "
                f"got {self.n_heldout_tasks}"
            )
        _check_int("n_choices", self.n_choices, 2)
        _check_int("min_word_length", self.min_word_length, 2)
        _check_int("max_word_length", self.max_word_length, self.min_word_length)
        _check_int("seed", self.seed, 0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SkillsBenchmarkConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SkillsBenchmarkConfig fields {unknown}; known fields are {sorted(known)}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "SkillsBenchmarkConfig":
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class SkillTask:
    """One task of the benchmark.

    Attributes
    ----------
    task_id
        Router row of the task: training tasks come first, then held-out tasks.
    skills
        Indices into :data:`~tensorpoly_tn.skills.primitives.SKILLS`, sorted.
    split
        ``"train"`` or ``"heldout"``.
    """

    task_id: int
    skills: tuple[int, ...]
    split: Literal["train", "heldout"]

    @property
    def name(self) -> str:
        return "+".join(SKILLS[i].name for i in self.skills)


def random_word(rng: random.Random, min_length: int, max_length: int) -> str:
    """Draw a lowercase word with at least one vowel and one consonant."""
    length = rng.randint(min_length, max_length)
    letters = [rng.choice(string.ascii_lowercase) for _ in range(length - 2)]
    letters += [rng.choice("aeiou"), rng.choice(CONSONANTS)]
    rng.shuffle(letters)
    return "".join(letters)


class SkillsBenchmark:
    """Tasks, their skills and their examples, all generated from a :class:`SkillsBenchmarkConfig`.

    Examples
    --------
    >>> bench = SkillsBenchmark(SkillsBenchmarkConfig())
    >>> len(bench.train_tasks), len(bench.heldout_tasks)
    (11, 4)
    """

    def __init__(self, config: SkillsBenchmarkConfig | None = None) -> None:
        self.config = config or SkillsBenchmarkConfig()
        self.tasks = self._split_tasks()

    def _split_tasks(self) -> list[SkillTask]:
        cfg = self.config
        sets = list(itertools.combinations(range(cfg.n_skills), cfg.skills_per_task))
        rng = random.Random(f"heldout-{cfg.seed}")
        for _ in range(_MAX_DRAWS):
            heldout = rng.sample(sets, cfg.n_heldout_tasks)
            train = [s for s in sets if s not in heldout]
            # Every skill of a held-out task must be trained somewhere, or it cannot be recovered.
            if set(itertools.chain(*train)) == set(range(cfg.n_skills)):
                break
        else:  # pragma: no cover - unreachable with the limits checked in the config
            raise ValueError(f"no held-out split leaves every skill in training for {cfg}")
        tasks = [SkillTask(i, s, "train") for i, s in enumerate(sorted(train))]
        tasks += [SkillTask(len(train) + i, s, "heldout") for i, s in enumerate(sorted(heldout))]
        return tasks

    @property
    def train_tasks(self) -> list[SkillTask]:
        return [t for t in self.tasks if t.split == "train"]

    @property
    def heldout_tasks(self) -> list[SkillTask]:
        return [t for t in self.tasks if t.split == "heldout"]

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def skill_matrix(self, tasks: list[SkillTask] | None = None) -> np.ndarray:
        """Return the 0/1 matrix of shape (task, skill) that marks the skills each task uses."""
        tasks = self.tasks if tasks is None else tasks
        matrix = np.zeros((len(tasks), self.config.n_skills))
        for row, task in enumerate(tasks):
            matrix[row, list(task.skills)] = 1.0
        return matrix

    def _choices(self, task: SkillTask, word: str, rng: random.Random) -> list[str] | None:
        """Return the answer and ``n_choices - 1`` distinct distractors, or None if too few differ."""
        answer = apply_skills(word, task.skills)
        # Distractors first drop one of the task's skills, then swap one for a skill it lacks.
        partial = [tuple(s for s in task.skills if s != left_out) for left_out in task.skills]
        others = [s for s in range(self.config.n_skills) if s not in task.skills]
        swapped = [tuple(sorted(set(task.skills) - {old} | {new})) for old in task.skills for new in others]
        rng.shuffle(partial)
        rng.shuffle(swapped)
        choices = [answer]
        for skills in partial + swapped:
            candidate = apply_skills(word, skills)
            if candidate not in choices:
                choices.append(candidate)
            if len(choices) == self.config.n_choices:
                return choices
        return None

    def examples(self, task: SkillTask, n: int, stream: str = "train", seed: int = 0) -> list[PromptedExample]:
        """Generate ``n`` examples of ``task``; the same (task, stream, seed) always gives the same examples.

        Parameters
        ----------
        task
            A task of this benchmark.
        n
            Number of examples.
        stream
            Name of an independent stream of examples, e.g. ``"train"``, ``"few-shot"`` or ``"test"``.
            Different streams draw different words.
        seed
            Seed within the stream (the few-shot protocol uses one per repetition).
        """
        _check_int("n", n, 0)
        if task not in self.tasks:
            raise ValueError(f"task {task!r} is not a task of this benchmark; use one of benchmark.tasks")
        cfg = self.config
        rng = random.Random(f"{cfg.seed}-{task.task_id}-{stream}-{seed}")
        examples = []
        for _ in range(n):
            for _ in range(_MAX_DRAWS):
                word = random_word(rng, cfg.min_word_length, cfg.max_word_length)
                choices = self._choices(task, word, rng)
                if choices is not None:
                    break
            else:  # pragma: no cover - words of 2+ letters always give distinct choices within the limit
                raise RuntimeError(f"could not draw a word with {cfg.n_choices} distinct choices for {task.name}")
            answer = choices[0]
            rng.shuffle(choices)
            examples.append(
                PromptedExample(
                    input_text=f"word: {word}",
                    target_text=answer,
                    choices=tuple(choices),
                    label=choices.index(answer),
                    task_id=task.task_id,
                    template=task.name,
                )
            )
        return examples

    def describe(self) -> str:
        """Summarise the split in one line per task."""
        return "\n".join(f"{t.task_id:>3} {t.split:<8} {t.name}" for t in self.tasks)
