"""Run outputs written atomically: results.json, results.md, config.json and router.png."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from collections.abc import Callable
from typing import Any, BinaryIO

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "results_markdown", "write_t0_outputs"]

logger = logging.getLogger(__name__)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a binary stream to a temporary file beside ``path``, then rename it over ``path``.

    A reader sees either the old file or the complete new one, never a truncated file, even
    when the process is killed mid-write. The temporary file is removed when ``write`` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically, see :func:`atomic_write`."""
    atomic_write(path, lambda stream: stream.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike[str], value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


def results_markdown(results: dict[str, Any]) -> str:
    """Format the results table: per task, mean and spread over seeds of the median accuracy over templates."""
    config = results["config"]
    model = config.get("model") or f"preset {config.get('preset')}"
    lines = [
        f"# T0 held-out tasks: {config['method']} on {model}",
        "",
        f"Trainable parameters: {results['trainable_parameters']:,}. Accuracy by rank classification "
        f"({'length-normalised' if config['length_normalize'] else 'summed'} log-likelihood): median over "
        "templates for each seed, then mean ± standard deviation over seeds.",
        "",
        "| task | accuracy (%) | seeds | templates | examples per template |",
        "|---|---:|---:|---:|---:|",
    ]
    summary = results["summary"]
    for task, row in summary.items():
        examples = sorted({r["n_examples"] for r in results["records"] if r["task"] == task})
        shown = str(examples[0]) if len(examples) == 1 else f"{examples[0]}-{examples[-1]}"
        lines.append(
            f"| {task} | {100 * row['mean']:.1f} ± {100 * row['std']:.1f} | {row['n_seeds']} | "
            f"{row['n_templates']} | {shown} |"
        )
    if summary:
        average = sum(row["mean"] for row in summary.values()) / len(summary)
        lines.append(f"| **average** | **{100 * average:.1f}** | | | |")
    lines += ["", f"Run time: {results['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def _write_router_plot(path: Path, allocation: dict[str, list[float]]) -> bool:
    if not allocation:
        return False
    import numpy as np
    from matplotlib.figure import Figure

    from .plots import plot_allocation

    tasks = list(allocation)
    matrix = np.array([allocation[task] for task in tasks])
    # A bare Figure renders without pyplot, so writing the file never switches the caller's backend.
    fig = Figure(figsize=(2.5 + 0.55 * matrix.shape[1], 1.0 + 0.4 * len(tasks)), constrained_layout=True)
    plot_allocation(
        matrix, tasks, [f"term {k}" for k in range(matrix.shape[1])], ax=fig.subplots(),
        title="Routing weights per task (mean over adapted layers and seeds)",
    )
    temporary = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(temporary, dpi=120)
    os.replace(temporary, path)
    return True


def write_t0_outputs(out_dir: str | os.PathLike[str], results: dict[str, Any]) -> list[Path]:
    """Write the four outputs of a T0 run into ``out_dir`` and return their paths."""
    out_dir = Path(out_dir)
    written = [out_dir / "config.json", out_dir / "results.json", out_dir / "results.md"]
    atomic_write_json(written[0], results["config"])
    atomic_write_json(written[1], results)
    atomic_write_text(written[2], results_markdown(results))
    router = out_dir / "router.png"
    if _write_router_plot(router, results.get("allocation", {})):
        written.append(router)
    else:
        logger.info("method %s has no router, so no router.png was written", results["config"]["method"])
    return written
