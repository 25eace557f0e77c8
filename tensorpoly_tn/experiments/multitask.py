"""The multitask stage at any scale: one process, or several under ``accelerate launch``, with resumable checkpoints.

Every process draws the same global batch of ``batch_size`` example indices (seeded as in
:func:`tensorpoly_tn.training.train_adapters`) and trains on its share ``indices[rank::world]``;
the data-parallel wrapper averages gradients, so every replica takes the same optimizer step.
A checkpoint contains the trainable parameters, the optimizer state, the step, the losses and the
torch random state. It is written to a temporary file and renamed over ``checkpoint.pt``, so a
run killed at any moment leaves either the previous checkpoint or the new one, never a broken
file. A resumed run skips the batches already taken and gives the same losses as an
uninterrupted run with the same seed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.example import PromptedExample
from ..inject import use_tasks
from ..reporting import atomic_write
from ..training import TrainingConfig, _batches, collate, trainable_parameter_groups

__all__ = ["CHECKPOINT_NAME", "save_checkpoint", "load_checkpoint", "train_multitask", "replica_difference"]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` with ``torch.save`` to a temporary file in the same folder, then rename it over ``path``."""
    atomic_write(path, lambda stream: torch.save(state, stream))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    ValueError
        When the file lacks one of the keys a checkpoint has.
    """
    state = torch.load(path, map_location="cpu", weights_only=False)
    missing = [k for k in ("step", "losses", "trainable", "optimizer", "rng") if k not in state]
    if missing:
        raise ValueError(f"{path} is not a multitask checkpoint: it lacks the keys {missing}")
    return state


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def replica_difference(model: nn.Module, accelerator) -> float:
    """Return the largest absolute difference of any trainable parameter between processes (0 with one)."""
    if accelerator is None or accelerator.num_processes == 1:
        return 0.0
    flat = torch.cat([p.detach().flatten().float() for p in model.parameters() if p.requires_grad])
    gathered = accelerator.gather(flat.unsqueeze(0).to(accelerator.device))  # (process, n_parameters)
    return float((gathered - gathered[0]).abs().max())


def _resume(model: nn.Module, optimizer, checkpoint_dir: Path | None) -> tuple[int, list[float]]:
    path = checkpoint_dir / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if path is None or not path.is_file():
        return 0, []
    state = load_checkpoint(path)
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state["trainable"].items():
            parameters[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    logger.info("resumed from %s at step %d", path, state["step"])
    return state["step"], list(state["losses"])


def train_multitask(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[PromptedExample],
    config: TrainingConfig,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 0,
    accelerator=None,
    stop_after: int | None = None,
    progress: bool = True,
) -> list[float]:
    """Train adapters and routers on ``examples``, resuming from ``checkpoint_dir`` when it has a checkpoint.

    Parameters
    ----------
    accelerator
        An ``accelerate.Accelerator``, or ``None`` for a single process without it.
    checkpoint_every
        Steps between checkpoints; 0 writes only the final one (when ``checkpoint_dir`` is set).
    stop_after
        Stop after this many steps of this call, as a killed run would (for tests).

    Returns
    -------
    list of float
        The loss of every step since step 0 (averaged over processes), resumed steps included.
    """
    if not examples:
        raise ValueError("examples is empty; give at least one PromptedExample to train on")
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    optimizer = torch.optim.AdamW(trainable_parameter_groups(model, config.lr, config.router_lr),
                                  weight_decay=config.weight_decay)
    start, losses = _resume(model, optimizer, checkpoint_dir)
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    if config.batch_size < world:
        raise ValueError(f"batch_size {config.batch_size} is smaller than the {world} processes; raise it")
    wrapped = model
    if accelerator is not None:
        wrapped, optimizer = accelerator.prepare(model, optimizer)
    device = next(model.parameters()).device
    trainable = [p for p in model.parameters() if p.requires_grad]
    batches = _batches(len(examples), config.batch_size, config.steps, torch.Generator().manual_seed(config.seed))
    model.train()
    bar = tqdm(total=config.steps, initial=start, desc="multitask", disable=not progress or rank != 0)
    for step, indices in enumerate(batches):
        if step < start:
            continue  # taken before the checkpoint; drawing it keeps the order of later batches
        if stop_after is not None and step - start >= stop_after:
            break
        batch = collate(tokenizer, [examples[i] for i in indices[rank::world]],
                        config.max_input_length, config.max_target_length, device)
        with use_tasks(model, batch.pop("task_ids")):
            loss = wrapped(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss) if accelerator is not None else loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        mean_loss = accelerator.reduce(loss.detach(), "mean") if accelerator is not None else loss.detach()
        losses.append(float(mean_loss))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        done = step + 1
        if checkpoint_dir is not None and (done == config.steps or (checkpoint_every and done % checkpoint_every == 0)):
            _checkpoint(model, optimizer, checkpoint_dir, done, losses, accelerator)
    bar.close()
    model.eval()
    return losses


def _checkpoint(model, optimizer, checkpoint_dir: Path, step: int, losses: list[float], accelerator) -> None:
    if accelerator is not None:
        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:
            return
    state = {
        "step": step,
        "losses": list(losses),
        "trainable": _trainable(model),
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
    }
    save_checkpoint(checkpoint_dir / CHECKPOINT_NAME, state)
    logger.debug("checkpoint at step %d written to %s", step, checkpoint_dir)
