"""The results table of the embedded-benchmark protocol, and the files written beside ``results.json``.

The layout of ``results.json`` is documented in ``docs/results-schema.md``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..reporting import atomic_write_json, atomic_write_text

__all__ = ["RESULTS_SCHEMA_VERSION", "results_table", "write_results", "check_results"]

logger = logging.getLogger(__name__)

RESULTS_SCHEMA_VERSION = 1
_REQUIRED_METHOD_KEYS = ("config", "trainable_parameters", "multitask", "few_shot", "router", "seconds")


def check_results(results: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first missing key when ``results`` does not follow the schema."""
    for key in ("schema_version", "kind", "config", "tasks", "skills", "methods", "chance_accuracy"):
        if key not in results:
            raise ValueError(f"results is missing the key {key!r}; see docs/results-schema.md")
    if results["schema_version"] != RESULTS_SCHEMA_VERSION:
        raise ValueError(
            f"results schema_version must be {RESULTS_SCHEMA_VERSION}, got {results['schema_version']!r}"
        )
    for name, entry in results["methods"].items():
        for key in _REQUIRED_METHOD_KEYS:
            if key not in entry:
                raise ValueError(f"results['methods'][{name!r}] is missing the key {key!r}")


def results_table(results: dict[str, Any]) -> str:
    """Format the results as a Markdown table: one row per method.

    Columns: trainable parameters and their ratio to the budget reference, then held-out accuracy
    as mean +- sample standard deviation over the few-shot seeds. Each seed's accuracy is the mean
    over held-out tasks. Routed methods also get the skill-recovery scores beside their chance level.
    """
    check_results(results)
    reference = results.get("budget_reference")
    seeds = len(results["config"]["few_shot_seeds"])
    header = (
        "| method | trainable params | vs budget | held-out accuracy (mean +- std, "
        f"{seeds} seeds) | skill recovery: perm. acc. (chance) | NMI (chance, max) |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---:|"]
    for name, entry in results["methods"].items():
        ratio = entry.get("budget_ratio")
        ratio_text = f"{ratio:.2f}x {reference}" if ratio is not None else "-"
        shot = entry["few_shot"]
        recovery = (entry["router"] or {}).get("skill_recovery")
        if recovery:
            perm = f"{recovery['permutation_accuracy']:.2f} ({recovery['chance_permutation_accuracy']:.2f})"
            nmi = f"{recovery['nmi']:.3f} ({recovery['chance_nmi']:.3f}, {recovery['max_nmi']:.3f})"
        else:
            perm = nmi = "- (dense)"
        lines.append(
            f"| {name} | {entry['trainable_parameters']:,} | {ratio_text} | "
            f"{shot['mean']:.3f} +- {shot['std']:.3f} | {perm} | {nmi} |"
        )
    lines.append("")
    lines.append(
        f"Chance accuracy: {results['chance_accuracy']:.3f}. Held-out tasks: "
        + ", ".join(t["name"] for t in results["tasks"] if t["split"] == "heldout")
        + "."
    )
    return "\n".join(lines)


def _write_plots(out_dir: Path, results: dict[str, Any]) -> list[Path]:
    from .plots import plot_method_scores, plot_skill_recovery

    import matplotlib.pyplot as plt

    written = []
    fig, _ = plot_method_scores(results)
    fig.savefig(out_dir / "scores.png", dpi=120)
    plt.close(fig)
    written.append(out_dir / "scores.png")
    train_tasks = [t for t in results["tasks"] if t["split"] == "train"]
    for name, entry in results["methods"].items():
        if not entry["router"]:
            continue
        allocation = np.asarray(entry["router"]["allocation"])[[t["task_id"] for t in train_tasks]]
        skills = np.zeros((len(train_tasks), len(results["skills"])))
        for row, task in enumerate(train_tasks):
            skills[row, task["skills"]] = 1.0
        fig, _ = plot_skill_recovery(
            allocation, skills, [t["name"] for t in train_tasks], results["skills"], title=name
        )
        path = out_dir / f"router-{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def write_results(out_dir: str | Path, results: dict[str, Any], plots: bool = True) -> list[Path]:
    """Write ``results.json``, ``results.md``, ``allocations.npz`` and the plots into ``out_dir``.

    Every file is written through a temporary file and a rename, so a killed run leaves either the
    previous file or the complete new one. Returns the paths written.
    """
    check_results(results)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "results.md", results_table(results) + "\n")
    written = [out_dir / "results.json", out_dir / "results.md"]
    allocations = {n: np.asarray(e["router"]["allocation"]) for n, e in results["methods"].items() if e["router"]}
    if allocations:
        temporary = out_dir / ".allocations.tmp.npz"
        np.savez(temporary, **allocations)
        temporary.replace(out_dir / "allocations.npz")
        written.append(out_dir / "allocations.npz")
    if plots:
        written += _write_plots(out_dir, results)
    logger.info("wrote %s", ", ".join(str(p) for p in written))
    return written
