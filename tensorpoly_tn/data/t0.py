"""The T0 held-out tasks: task registry, data folder lookup and the T-Few few-shot files.

The few-shot files follow the layout of the T-Few repository (Liu et al., 2022),
``<few_shot_root>/<task>/<k>_shot/<seed>_seed.jsonl``, one raw example per line in the
field layout of the original Hugging Face dataset.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "HELDOUT_TASKS",
    "TASK_SPECS",
    "DATA_DIR_ENV",
    "DataNotFoundError",
    "TaskSpec",
    "get_task",
    "resolve_data_dir",
    "few_shot_root",
    "read_jsonl",
    "few_shot_seeds",
    "load_few_shot",
    "offline_split",
]

logger = logging.getLogger(__name__)

HELDOUT_TASKS: tuple[str, ...] = (
    "anli-r1",
    "anli-r2",
    "anli-r3",
    "cb",
    "rte",
    "copa",
    "h-swag",
    "storycloze",
    "wic",
    "wsc",
    "winogrande",
)

DATA_DIR_ENV = "TENSORPOLY_DATA"

_SEED_FILE = re.compile(r"^(\d+)_seed\.jsonl$")


class DataNotFoundError(FileNotFoundError):
    """A data folder or file that the T0 experiments need is missing."""


def _checked_label(task: str, field: str, value: Any, offset: int, num_classes: int) -> int:
    """Convert ``value`` (an int or a digit string) to a 0-based label and check its range."""
    try:
        label = int(value) - offset
    except (TypeError, ValueError):
        label = -1
    if isinstance(value, bool) or not 0 <= label < num_classes:
        accepted = list(range(offset, offset + num_classes))
        raise ValueError(
            f"{task} example has {field}={value!r}, which is not a valid label; "
            f"expected one of {accepted} (an int or a digit string)"
        )
    return label


def _label_reader(
    task: str, field: str, num_classes: int, offset: int = 0
) -> Callable[[Mapping[str, Any]], int]:
    """Build a function that reads the gold label of a raw ``task`` example from ``field``."""

    def read_label(example: Mapping[str, Any]) -> int:
        if field not in example:
            raise ValueError(
                f"{task} example has no {field!r} field, which contains its gold label; "
                f"fields present: {sorted(example)}"
            )
        return _checked_label(task, field, example[field], offset, num_classes)

    read_label.__name__ = f"label_from_{field}"
    return read_label


@dataclass(frozen=True)
class TaskSpec:
    """Where a held-out task's data and prompts live, and how to read its gold label.

    Attributes
    ----------
    name
        Task name as used by T-Few, e.g. ``"anli-r1"`` or ``"h-swag"``.
    hf_path, hf_subset
        Hugging Face dataset path and configuration (``None`` when the dataset has none).
    hub_train_split
        Split that the hub fallback samples few-shot training examples from.
    hub_eval_split
        Split that the hub fallback evaluates on.
    promptsource_dir
        Folder of the task's ``templates.yaml`` relative to the promptsource templates root.
    builtin_templates
        File stem of the package's own templates for the task (``builtin_templates/<stem>.yaml``).
    k
        Number of training examples per few-shot file (the ``<k>_shot`` folder).
    num_classes
        Number of answer choices.
    label_fn
        Function from a raw example to its 0-based gold label; raises ``ValueError`` on a
        missing or out-of-range field.
    excluded_templates
        Promptsource template names that are never used for this task.
    """

    name: str
    hf_path: str
    hf_subset: str | None
    hub_train_split: str
    hub_eval_split: str
    promptsource_dir: str
    builtin_templates: str
    k: int
    num_classes: int
    label_fn: Callable[[Mapping[str, Any]], int]
    excluded_templates: tuple[str, ...] = ()

    def label(self, example: Mapping[str, Any]) -> int:
        """Return the 0-based gold label of a raw example of this task."""
        return self.label_fn(example)

    @property
    def dataset_name(self) -> str:
        """Promptsource-style dataset name, e.g. ``"super_glue/rte"``."""
        return self.hf_path if self.hf_subset is None else f"{self.hf_path}/{self.hf_subset}"


def _anli(round_number: int) -> TaskSpec:
    name = f"anli-r{round_number}"
    # NOTE: T-Few evaluates ANLI on test_rN; T0 reports dev_rN, which this registry uses.
    return TaskSpec(
        name=name,
        hf_path="anli",
        hf_subset=None,
        hub_train_split=f"train_r{round_number}",
        hub_eval_split=f"dev_r{round_number}",
        promptsource_dir="anli",
        builtin_templates="anli",
        k=50,
        num_classes=3,
        label_fn=_label_reader(name, "label", 3),
    )


def _super_glue(name: str, subset: str, num_classes: int, excluded: tuple[str, ...] = ()) -> TaskSpec:
    return TaskSpec(
        name=name,
        hf_path="super_glue",
        hf_subset=subset,
        hub_train_split="train",
        hub_eval_split="validation",
        promptsource_dir=f"super_glue/{subset}",
        builtin_templates=name,
        k=32,
        num_classes=num_classes,
        label_fn=_label_reader(name, "label", num_classes),
        excluded_templates=excluded,
    )


# These four COPA templates render only for one question type ("cause" or "effect") and
# come out empty for the other; T-Few leaves them out and evaluates COPA on the other eight.
_COPA_ONE_SIDED_TEMPLATES = (
    "\u2026What could happen next, C1 or C2?",
    "\u2026As a result, C1 or C2?",
    "\u2026which may be caused by",
    "\u2026why? C1 or C2",
)

TASK_SPECS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        _anli(1),
        _anli(2),
        _anli(3),
        _super_glue("cb", "cb", 3),
        _super_glue("rte", "rte", 2),
        _super_glue("copa", "copa", 2, _COPA_ONE_SIDED_TEMPLATES),
        TaskSpec(
            name="h-swag",
            hf_path="hellaswag",
            hf_subset=None,
            hub_train_split="train",
            hub_eval_split="validation",
            promptsource_dir="hellaswag",
            builtin_templates="h-swag",
            k=20,
            num_classes=4,
            # The hub stores the hellaswag label as a string ("0".."3").
            label_fn=_label_reader("h-swag", "label", 4),
        ),
        TaskSpec(
            name="storycloze",
            hf_path="story_cloze",
            hf_subset="2016",
            # story_cloze has no labelled training split: T-Few samples its few-shot
            # examples from validation and evaluates on test.
            hub_train_split="validation",
            hub_eval_split="test",
            promptsource_dir="story_cloze/2016",
            builtin_templates="storycloze",
            k=70,
            num_classes=2,
            label_fn=_label_reader("storycloze", "answer_right_ending", 2, offset=1),
        ),
        _super_glue("wic", "wic", 2),
        _super_glue("wsc", "wsc.fixed", 2),
        TaskSpec(
            name="winogrande",
            hf_path="winogrande",
            hf_subset="winogrande_xl",
            hub_train_split="train",
            hub_eval_split="validation",
            promptsource_dir="winogrande/winogrande_xl",
            builtin_templates="winogrande",
            k=50,
            num_classes=2,
            label_fn=_label_reader("winogrande", "answer", 2, offset=1),
        ),
    )
}


def get_task(name: str | TaskSpec) -> TaskSpec:
    """Look up a held-out task by name (a ``TaskSpec`` passes through unchanged).

    Raises
    ------
    ValueError
        When ``name`` is not one of :data:`HELDOUT_TASKS`.
    """
    if isinstance(name, TaskSpec):
        return name
    try:
        return TASK_SPECS[name]
    except (KeyError, TypeError):
        known = ", ".join(HELDOUT_TASKS)
        raise ValueError(f"unknown T0 held-out task {name!r}; known tasks: {known}") from None


def _repository_root() -> Path:
    # tensorpoly_tn/data/t0.py -> the folder that contains the tensorpoly_tn package
    return Path(__file__).resolve().parents[2]


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Find the data folder (the one that contains ``t0/few_shot`` and ``promptsource``).

    The first of these wins: ``data_dir``; the environment variable ``TENSORPOLY_DATA``;
    ``../shared/data`` from the current directory; ``../shared/data`` from the folder that
    contains the ``tensorpoly_tn`` package.

    Raises
    ------
    DataNotFoundError
        When ``data_dir`` or ``TENSORPOLY_DATA`` names a folder that does not exist, or
        when neither is given and no fallback folder exists.
    """
    how_to_fix = f"pass --data-dir (data_dir=...) or set the environment variable {DATA_DIR_ENV}"
    for source, value in (("data_dir argument", data_dir), (DATA_DIR_ENV, os.environ.get(DATA_DIR_ENV))):
        if value is None or value == "":
            continue
        path = Path(value).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(f"data folder {str(path)!r} from the {source} does not exist; {how_to_fix}")
        return path

    candidates = [Path.cwd() / ".." / "shared" / "data", _repository_root() / ".." / "shared" / "data"]
    for path in candidates:
        if path.is_dir():
            return path.resolve()
    looked = ", ".join(repr(str(path)) for path in candidates)
    raise DataNotFoundError(
        f"no data folder found: no data_dir argument, {DATA_DIR_ENV} is not set, and none of {looked} exists; "
        f"{how_to_fix}"
    )


def few_shot_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder that contains one sub-folder of few-shot files per task.

    Both ``<data_dir>/t0/few_shot`` (this project's data layout) and ``<data_dir>/few_shot``
    (the ``data`` folder of a T-Few checkout) are accepted, in that order.
    """
    root = resolve_data_dir(data_dir)
    candidates = [root / "t0" / "few_shot", root / "few_shot"]
    for path in candidates:
        if path.is_dir():
            return path
    raise DataNotFoundError(
        f"no few-shot folder in data folder {str(root)!r}: looked for {str(candidates[0])!r} and "
        f"{str(candidates[1])!r}; point --data-dir at a folder with the T-Few few-shot files"
    )


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON Lines file into a list of dicts, skipping blank lines.

    Raises
    ------
    ValueError
        When a line is not valid JSON or not a JSON object; the message names the file
        and the 1-based line number.
    """
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{os.fspath(path)}, line {line_number}: invalid JSON ({err.msg})") from err
            if not isinstance(row, dict):
                raise ValueError(
                    f"{os.fspath(path)}, line {line_number}: expected a JSON object, got {type(row).__name__}"
                )
            rows.append(row)
    return rows


def _task_shot_dir(spec: TaskSpec, data_dir: str | os.PathLike[str] | None) -> Path:
    return few_shot_root(data_dir) / spec.name / f"{spec.k}_shot"


def few_shot_seeds(task: str | TaskSpec, data_dir: str | os.PathLike[str] | None = None) -> list[int]:
    """List the seeds that have a few-shot file for ``task``, in ascending order."""
    spec = get_task(task)
    shot_dir = _task_shot_dir(spec, data_dir)
    if not shot_dir.is_dir():
        raise DataNotFoundError(
            f"few-shot folder {str(shot_dir)!r} of task {spec.name!r} does not exist; "
            f"expected files named <seed>_seed.jsonl there"
        )
    seeds = [int(match.group(1)) for match in map(_SEED_FILE.match, os.listdir(shot_dir)) if match]
    return sorted(seeds)


def load_few_shot(
    task: str | TaskSpec, data_dir: str | os.PathLike[str] | None = None, seed: int = 0
) -> list[dict[str, Any]]:
    """Load the ``k`` training examples that T-Few drew for ``task`` with ``seed``.

    Raises
    ------
    DataNotFoundError
        When the file for ``seed`` does not exist; the message lists the seeds that do.
    """
    spec = get_task(task)
    path = _task_shot_dir(spec, data_dir) / f"{seed}_seed.jsonl"
    if not path.is_file():
        available = few_shot_seeds(spec, data_dir)
        raise DataNotFoundError(
            f"few-shot file {str(path)!r} of task {spec.name!r} does not exist; available seeds: {available}"
        )
    examples = read_jsonl(path)
    if len(examples) != spec.k:
        logger.warning("%s contains %d examples, expected k=%d for task %s", path, len(examples), spec.k, spec.name)
    return examples


def _content_key(example: Mapping[str, Any]) -> str:
    return json.dumps(example, sort_keys=True, ensure_ascii=False)


def offline_split(
    task: str | TaskSpec, data_dir: str | os.PathLike[str] | None = None, train_seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split the few-shot files into training and evaluation sets without a network.

    Offline protocol: the model adapts on the file of ``train_seed``. The evaluation set
    is every example in the files of the other seeds that is not in the training file,
    each counted once. Examples are compared by their full JSON content (keys sorted).
    The evaluation order is deterministic: seeds ascending, then file order, keeping the
    first occurrence of each example.

    Returns
    -------
    train, evaluation
        Raw example dicts.

    Raises
    ------
    DataNotFoundError
        When the file for ``train_seed`` does not exist.
    ValueError
        When no other seed file exists, so the evaluation set would be empty.
    """
    spec = get_task(task)
    train = load_few_shot(spec, data_dir, train_seed)
    seen = {_content_key(example) for example in train}

    evaluation: list[dict[str, Any]] = []
    other_seeds = [seed for seed in few_shot_seeds(spec, data_dir) if seed != train_seed]
    for seed in other_seeds:
        for example in load_few_shot(spec, data_dir, seed):
            key = _content_key(example)
            if key not in seen:
                seen.add(key)
                evaluation.append(example)
    if not evaluation:
        raise ValueError(
            f"offline split of task {spec.name!r} with train_seed={train_seed} has no evaluation examples: "
            f"other seeds {other_seeds} add nothing new; add more seed files or evaluate on the hub "
            f"validation split"
        )
    logger.info(
        "%s: %d training examples (seed %d), %d evaluation examples from seeds %s",
        spec.name,
        len(train),
        train_seed,
        len(evaluation),
        other_seeds,
    )
    return train, evaluation
