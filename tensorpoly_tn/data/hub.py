"""Fallback to the Hugging Face hub when the T-Few few-shot files are not on disk.

``datasets`` is an optional dependency (the ``hub`` extra) and is imported only inside
these functions, so the rest of the package works without it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from .t0 import TaskSpec, get_task

__all__ = ["HubUnavailableError", "sample_few_shot_from_hub", "load_hub_validation"]

logger = logging.getLogger(__name__)


class HubUnavailableError(RuntimeError):
    """A data set could not be loaded from the Hugging Face hub (no ``datasets``, no network, no cache)."""


def _load_split(
    spec: TaskSpec,
    split: str,
    cache_dir: str | os.PathLike[str] | None,
    manual_dir: str | os.PathLike[str] | None,
) -> Any:
    """Load one split of the task's dataset with ``datasets.load_dataset``."""
    description = f"{spec.hf_path}" + (f" ({spec.hf_subset})" if spec.hf_subset else "") + f", split {split!r}"
    how_to_fix = (
        f"pass --data-dir with a folder holding the T-Few few-shot files "
        f"(<data-dir>/t0/few_shot/{spec.name}/{spec.k}_shot/<seed>_seed.jsonl) to run offline"
    )
    if spec.hf_path == "story_cloze":
        how_to_fix += (
            "; story_cloze is not downloadable from the hub: request its files from the Story Cloze "
            "authors and pass their folder as manual_dir"
        )
    try:
        import datasets
    except ImportError as err:
        raise HubUnavailableError(
            f"could not load data set {description} for task {spec.name!r} because the 'datasets' package is "
            f"not installed ({err}); install it with `pip install tensorpoly_tn[hub]`, or {how_to_fix}"
        ) from err

    kwargs: dict[str, Any] = {"split": split}
    if cache_dir is not None:
        kwargs["cache_dir"] = os.fspath(cache_dir)
    if manual_dir is not None:
        kwargs["data_dir"] = os.fspath(manual_dir)
    logger.info("loading %s for task %s from the Hugging Face hub", description, spec.name)
    try:
        # Any failure here (network, offline mode, missing cache, a removed loading script)
        # leaves the caller with the same choice, so every exception is reported alike.
        return datasets.load_dataset(spec.hf_path, spec.hf_subset, **kwargs)
    except Exception as err:  # noqa: BLE001
        raise HubUnavailableError(
            f"could not load data set {description} for task {spec.name!r}: {type(err).__name__}: {err}; "
            f"{how_to_fix}"
        ) from err


def sample_few_shot_from_hub(
    task: str | TaskSpec,
    seed: int,
    k: int | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    manual_dir: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """Draw ``k`` training examples of ``task`` from the hub with a seeded generator.

    The draw is ``numpy.random.default_rng(seed).choice(n, k, replace=False)`` over the
    ``TaskSpec.hub_train_split`` rows. It is reproducible, but it does not reproduce the
    T-Few files of the same seed, which used a different sampler.

    Parameters
    ----------
    task
        Held-out task name or spec.
    seed
        Seed of the generator.
    k
        Number of examples; ``TaskSpec.k`` by default.
    cache_dir
        ``datasets`` cache folder; the library default when ``None``.
    manual_dir
        Folder of manually downloaded files, passed as ``data_dir`` (needed by story_cloze).

    Raises
    ------
    HubUnavailableError
        When ``datasets`` is missing or the split cannot be loaded.
    ValueError
        When ``k`` is not positive or exceeds the split size.
    """
    spec = get_task(task)
    k = spec.k if k is None else k
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    rows = _load_split(spec, spec.hub_train_split, cache_dir, manual_dir)
    if k > len(rows):
        raise ValueError(f"k={k} exceeds the {len(rows)} examples of {spec.name} split {spec.hub_train_split!r}")
    indices = np.random.default_rng(seed).choice(len(rows), size=k, replace=False)
    return [dict(rows[int(index)]) for index in indices]


def load_hub_validation(
    task: str | TaskSpec,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    manual_dir: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """Load the evaluation split of ``task`` (``TaskSpec.hub_eval_split``) from the hub.

    The splits are dev_r1/2/3 for ANLI, validation for SuperGLUE, hellaswag and
    winogrande_xl, and test for story_cloze 2016, whose validation split provides the
    training examples.

    Raises
    ------
    HubUnavailableError
        When ``datasets`` is missing or the split cannot be loaded.
    """
    spec = get_task(task)
    rows = _load_split(spec, spec.hub_eval_split, cache_dir, manual_dir)
    return [dict(row) for row in rows]
