"""Plots of the embedded-benchmark results: scores per method, and learned vs true task x skill matrices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..plots import plot_allocation
from .router_analysis import permutation_accuracy

__all__ = ["plot_method_scores", "plot_skill_recovery"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_method_scores(results: dict[str, Any], ax=None):
    """Draw held-out accuracy per method (mean and standard deviation over seeds) as a bar chart.

    Each bar is labelled with the method's trainable parameter count. Returns ``(fig, ax)``.
    """
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 3.5), constrained_layout=True)
    else:
        fig = ax.figure
    names = list(results["methods"])
    means = [results["methods"][n]["few_shot"]["mean"] for n in names]
    stds = [results["methods"][n]["few_shot"]["std"] for n in names]
    colors = ["tab:gray" if results["methods"][n]["router"] is None else "tab:blue" for n in names]
    ax.bar(range(len(names)), means, yerr=stds, color=colors, capsize=4)
    labels = [f"{n}\n{results['methods'][n]['trainable_parameters'] / 1000:.1f}k" for n in names]
    ax.set_xticks(range(len(names)), labels=labels)
    ax.axhline(results["chance_accuracy"], color="black", linestyle="--", linewidth=1, label="chance")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.set_title("few-shot accuracy on held-out skill compositions (gray: dense)")
    return fig, ax


def plot_skill_recovery(
    allocation: np.ndarray,
    skills: np.ndarray,
    task_names: Sequence[str],
    skill_names: Sequence[str],
    axes=None,
    title: str | None = None,
):
    """Draw the generator's task x skill matrix beside the learned allocation, experts matched to skills.

    Parameters
    ----------
    allocation
        Learned routing weights, shape (task, expert).
    skills
        0/1 skill matrix, shape (task, skill).
    task_names, skill_names
        Row and column labels.
    axes
        Two matplotlib axes; a new figure is made when ``None``.

    Returns
    -------
    tuple
        ``(fig, axes)``.
    """
    plt = _pyplot()
    allocation = np.asarray(allocation, dtype=float)
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(12, 1.5 + 0.35 * len(task_names)), constrained_layout=True)
    else:
        fig = axes[0].figure
    score, matched = permutation_accuracy(allocation, skills)
    # Matched experts first, in skill order, then the unmatched ones.
    order = [e for e in matched if e is not None]
    order += [e for e in range(allocation.shape[1]) if e not in order]
    expert_labels = [
        f"e{e} ({skill_names[matched.index(e)]})" if e in matched else f"e{e}" for e in order
    ]
    plot_allocation(skills, task_names, skill_names, ax=axes[0], title="generator: task x skill", annotate=False)
    plot_allocation(
        allocation[:, order], task_names, expert_labels, ax=axes[1],
        title=f"{title + ': ' if title else ''}learned allocation (perm. acc. {score:.2f})",
    )
    return fig, axes
