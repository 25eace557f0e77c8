"""Figures: router allocation heatmaps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["plot_allocation"]


def plot_allocation(
    matrix: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    ax=None,
    title: str | None = None,
    annotate: bool = True,
):
    """Draw a task x expert allocation matrix as a heatmap.

    Parameters
    ----------
    matrix
        Array of shape (task, expert): each row the routing weights of one task.
    row_labels, col_labels
        Names of the tasks (rows) and experts (columns).
    ax
        A matplotlib axes to draw on; a new figure is created when ``None``.
    title
        Axes title.
    annotate
        Write each weight in its cell (skipped above 400 cells).

    Returns
    -------
    tuple
        ``(fig, ax)``.
    """
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape != (len(row_labels), len(col_labels)):
        raise ValueError(
            f"matrix must have shape (len(row_labels), len(col_labels)) = ({len(row_labels)}, {len(col_labels)}), "
            f"got {matrix.shape}"
        )
    if ax is None:
        height = 1.0 + 0.4 * len(row_labels)
        width = 2.5 + 0.55 * len(col_labels)
        fig, ax = plt.subplots(figsize=(width, height), constrained_layout=True)
    else:
        fig = ax.figure
    image = ax.imshow(matrix, cmap="viridis", aspect="auto", vmin=0.0, vmax=max(float(matrix.max()), 1e-12))
    ax.set_xticks(range(len(col_labels)), labels=list(col_labels), rotation=45, ha="right")
    ax.set_yticks(range(len(row_labels)), labels=list(row_labels))
    if annotate and matrix.size <= 400:
        threshold = 0.5 * float(matrix.max())
        for (row, col), value in np.ndenumerate(matrix):
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if value > threshold else "white")
    fig.colorbar(image, ax=ax, label="routing weight")
    if title:
        ax.set_title(title)
    return fig, ax
