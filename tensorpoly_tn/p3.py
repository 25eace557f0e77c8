"""A P3-style training mixture: the T0 training datasets rendered with their promptsource templates.

Each (dataset, template) pair is one task with its own router row, as in the multitask runs of
Polytropon, MHR and TensorPoly on T0. Raw examples come from the Hugging Face Hub through
``datasets`` (an optional dependency, ``pip install tensorpoly_tn[hub]``); tests pass their own
``load_dataset`` so that nothing is downloaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .data.example import PromptedExample
from .data.templates import TemplateRenderError, load_templates_file

__all__ = ["T0_TRAIN_DATASETS", "build_p3_mixture"]

logger = logging.getLogger(__name__)

# The T0 training mixture of Sanh et al. (2022), "Multitask Prompted Training Enables Zero-Shot
# Task Generalization", as (Hugging Face dataset, subset) pairs.
T0_TRAIN_DATASETS: tuple[tuple[str, str | None], ...] = (
    ("commonsense_qa", None), ("dream", None), ("quail", None), ("quartz", None), ("social_i_qa", None),
    ("wiqa", None), ("cosmos_qa", None), ("qasc", None), ("quarel", None), ("sciq", None),
    ("wiki_hop", "original"), ("adversarial_qa", "dbidaf"), ("adversarial_qa", "dbert"),
    ("adversarial_qa", "droberta"), ("quoref", None), ("ropes", None), ("duorc", "SelfRC"),
    ("duorc", "ParaphraseRC"), ("kilt_tasks", "hotpotqa"), ("wiki_qa", None), ("common_gen", None),
    ("wiki_bio", None), ("amazon_polarity", None), ("app_reviews", None), ("imdb", None),
    ("rotten_tomatoes", None), ("yelp_review_full", None), ("cnn_dailymail", "3.0.0"), ("gigaword", None),
    ("multi_news", None), ("samsum", None), ("xsum", None), ("ag_news", None), ("dbpedia_14", None),
    ("trec", None), ("glue", "mrpc"), ("glue", "qqp"), ("paws", "labeled_final"),
)


def _hub_loader(name: str, subset: str | None, split: str) -> Sequence[dict[str, Any]]:
    try:
        import datasets
    except ImportError as error:
        raise RuntimeError("the P3 mixture needs the `datasets` package: pip install 'tensorpoly_tn[hub]'") from error
    try:
        return datasets.load_dataset(name, subset, split=split)
    except OSError as error:  # ConnectionError offline, FileNotFoundError for an unknown name
        raise RuntimeError(
            f"dataset {name!r} (subset {subset!r}, split {split!r}) could not be loaded from the Hugging Face "
            f"Hub ({type(error).__name__}: {error}); check the network connection or HF_DATASETS_OFFLINE, or "
            "train offline on the embedded benchmark (data.source 'skills')"
        ) from error


def _label(example: dict[str, Any], has_choices: bool) -> int:
    value = example.get("label", -1)
    return value if has_choices and isinstance(value, int) and value >= 0 else -1


def build_p3_mixture(
    templates_dir: str | Path,
    datasets: Sequence[Sequence[str | None]] = T0_TRAIN_DATASETS,
    examples_per_template: int = 1000,
    split: str = "train",
    load_dataset: Callable[[str, str | None, str], Sequence[dict[str, Any]]] | None = None,
    progress: bool = True,
) -> tuple[list[PromptedExample], int]:
    """Render the first ``examples_per_template`` examples of every dataset with every one of its templates.

    Parameters
    ----------
    templates_dir
        Promptsource templates root: ``<dataset>/[<subset>/]templates.yaml``.
    datasets
        (name, subset) pairs; the default is the T0 training mixture.
    load_dataset
        ``(name, subset, split) -> rows``; default: ``datasets.load_dataset`` from the Hub.

    Returns
    -------
    tuple
        The examples, and the number of tasks (templates); task ids run from 0 in dataset order.

    Raises
    ------
    FileNotFoundError
        When a dataset has no templates file under ``templates_dir``.
    """
    loader = load_dataset or _hub_loader
    examples: list[PromptedExample] = []
    task_id = 0
    for name, subset in tqdm(datasets, desc="P3 mixture", disable=not progress):
        path = Path(templates_dir) / name / (subset or "") / "templates.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"promptsource templates {str(path)!r} for dataset {name}/{subset} do not exist")
        templates = load_templates_file(path, f"{name}/{subset}" if subset else name)
        rows = list(loader(name, subset, f"{split}[:{examples_per_template}]"))
        for template in templates:
            skipped = 0
            for row in rows:
                try:
                    examples.append(template.apply(row, _label(row, template.answer_choices is not None), task_id))
                except (TemplateRenderError, ValueError):
                    skipped += 1
            if skipped:
                logger.info("%s/%s template %r: skipped %d of %d examples", name, subset, template.name, skipped, len(rows))
            task_id += 1
    logger.info("P3 mixture: %d examples over %d templates", len(examples), task_id)
    return examples, task_id
