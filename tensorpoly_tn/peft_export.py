"""Write one task's adapters as a standard PEFT LoRA adapter directory.

The directory contains ``adapter_config.json`` and ``adapter_model.safetensors`` in the layout that
``peft.PeftModel.from_pretrained`` reads (checked against peft 0.21): tensors named
``base_model.model.<module>.lora_A.weight`` of shape (rank, d_in) and
``base_model.model.<module>.lora_B.weight`` of shape (d_out, rank). PEFT scales the update by
``lora_alpha / r``, so ``lora_alpha`` is written as ``scaling * rank``. PEFT itself is not needed
to export.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .inject import adapter_layers
from .merge import task_factors

__all__ = ["export_peft_lora", "PEFT_WEIGHTS_NAME", "PEFT_CONFIG_NAME"]

logger = logging.getLogger(__name__)

PEFT_WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_CONFIG_NAME = "adapter_config.json"


def _peft_config(rank: int, alpha: float, target_modules: list[str], base_model: str | None, task_type: str) -> dict:
    return {
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": base_model,
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "target_modules": target_modules,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "init_lora_weights": True,
        "modules_to_save": None,
        "inference_mode": True,
    }


def export_peft_lora(
    model: nn.Module,
    task: int,
    path: str | Path,
    base_model_name_or_path: str | None = None,
    task_type: str = "SEQ_2_SEQ_LM",
) -> Path:
    """Write the adapters of ``model`` for ``task`` as a PEFT LoRA adapter in directory ``path``.

    Parameters
    ----------
    model
        A model with adapters from :func:`tensorpoly_tn.apply_adapters`; module names are taken
        relative to it, so export the model that ``PeftModel.from_pretrained`` will wrap.
    task
        Task id whose routing is collapsed (see :func:`tensorpoly_tn.merge.task_factors`).
    path
        Output directory; created if missing, files in it are overwritten.
    base_model_name_or_path
        Written to ``adapter_config.json`` for PEFT to find the base model; optional.
    task_type
        PEFT task type; ``"SEQ_2_SEQ_LM"`` for T5.

    Returns
    -------
    pathlib.Path
        The directory written.

    Raises
    ------
    ValueError
        When the model has no adapters, or its layers differ in rank or scaling (one PEFT
        config carries one rank and one alpha).
    """
    layers = adapter_layers(model)
    if not layers:
        raise ValueError("the model has no adapter layers to export; call tensorpoly_tn.apply_adapters first")
    ranks = {layer.rank for layer in layers.values()}
    scalings = {layer.scaling for layer in layers.values()}
    if len(ranks) != 1 or len(scalings) != 1:
        raise ValueError(
            f"every adapter layer must share one rank and one scaling to export a PEFT LoRA config; "
            f"found ranks {sorted(ranks)} and scalings {sorted(scalings)}"
        )
    rank, scaling = ranks.pop(), scalings.pop()

    tensors: dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        a, b = task_factors(layer, task)  # (d_in, rank), (rank, d_out)
        tensors[f"base_model.model.{name}.lora_A.weight"] = a.T.contiguous().cpu()  # (rank, d_in)
        tensors[f"base_model.model.{name}.lora_B.weight"] = b.T.contiguous().cpu()  # (d_out, rank)

    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / PEFT_WEIGHTS_NAME), metadata={"format": "pt"})
    config = _peft_config(rank, scaling * rank, sorted(layers), base_model_name_or_path, task_type)
    (directory / PEFT_CONFIG_NAME).write_text(json.dumps(config, indent=2))
    logger.info("exported %d layers for task %d as a PEFT LoRA adapter to %s", len(layers), task, directory)
    return directory
