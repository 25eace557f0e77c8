r"""Rank classification of answer choices with a seq2seq model, as in T0 and T-Few.

Each answer choice :math:`y = (y_1, \dots, y_T)`, with the EOS token the tokenizer appends, is
scored as the decoder target given the prompt :math:`x`:

.. math::

    s(y) = \sum_{t=1}^{T} \log p(y_t \mid x, y_{<t}),
    \qquad s_{\mathrm{norm}}(y) = s(y) / T

and the prediction is the choice with the highest score. Routed adapters get each example's
``task_id`` through :func:`tensorpoly_tn.use_tasks`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers.modeling_outputs import BaseModelOutput

from .data.example import PromptedExample
from .inject import adapter_layers, use_tasks

__all__ = ["score_choices", "rank_classify", "accuracy"]

logger = logging.getLogger(__name__)

# Label value that the loss of Hugging Face models, and the sum here, ignore.
IGNORE_INDEX = -100


@dataclass(frozen=True)
class _Settings:
    """Options shared by every batch of one :func:`score_choices` call."""

    routed: bool
    length_normalize: bool
    max_input_length: int | None
    device: torch.device


def _check_examples(examples: Sequence[PromptedExample]) -> None:
    for index, example in enumerate(examples):
        if not example.choices:
            raise ValueError(
                f"example {index} has no answer choices (input_text {example.input_text[:60]!r}), "
                "but rank classification needs at least one choice per example"
            )


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode and restore each one's own flag on exit."""
    previous = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in previous.items():
            module.training = training


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return torch.device("cpu") if parameter is None else parameter.device


def _routing(model: nn.Module, routed: bool, task_ids: torch.Tensor) -> contextlib.AbstractContextManager:
    """Return ``use_tasks(model, task_ids)`` for a model with adapters, else a context that does nothing."""
    return use_tasks(model, task_ids) if routed else contextlib.nullcontext()


def _encode_inputs(
    tokenizer: Any, texts: list[str], max_input_length: int | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize prompts into input ids and attention mask, both (batch, src_seq)."""
    encoded = tokenizer(
        texts,
        padding=True,
        truncation=max_input_length is not None,
        max_length=max_input_length,
        return_tensors="pt",
    )
    return encoded["input_ids"].to(device), encoded["attention_mask"].to(device)


def _encode_targets(tokenizer: Any, texts: list[str], device: torch.device) -> torch.Tensor:
    """Tokenize answer choices into labels (rows, tgt_seq), padding set to ``IGNORE_INDEX``."""
    encoded = tokenizer(text_target=texts, padding=True, return_tensors="pt")
    labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, IGNORE_INDEX)
    return labels.to(device)


def _sequence_scores(logits: torch.Tensor, labels: torch.Tensor, length_normalize: bool) -> torch.Tensor:
    """Sum (or average) the log-probabilities of the label tokens.

    Parameters
    ----------
    logits
        Decoder logits, shape (rows, tgt_seq, vocab).
    labels
        Target ids, shape (rows, tgt_seq), with ``IGNORE_INDEX`` at padding.

    Returns
    -------
    torch.Tensor
        Shape (rows,), float32.
    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (rows, tgt_seq, vocab)
    mask = labels != IGNORE_INDEX  # (rows, tgt_seq)
    token_log_probs = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (rows, tgt_seq)
    totals = (token_log_probs * mask).sum(dim=-1)  # (rows,)
    if length_normalize:
        totals = totals / mask.sum(dim=-1)
    return totals


def _group(flat: list[float], examples: Sequence[PromptedExample]) -> list[list[float]]:
    """Split scores listed choice by choice into one list per example."""
    grouped, start = [], 0
    for example in examples:
        grouped.append(flat[start : start + len(example.choices)])
        start += len(example.choices)
    return grouped


def _score_encode_once(
    model: nn.Module,
    tokenizer: Any,
    batch: Sequence[PromptedExample],
    settings: _Settings,
) -> list[list[float]]:
    """Score one batch of examples: run the encoder once, then the decoder on every choice."""
    input_ids, attention_mask = _encode_inputs(
        tokenizer, [example.input_text for example in batch], settings.max_input_length, settings.device
    )
    task_ids = torch.tensor([example.task_id for example in batch], device=settings.device)  # (batch,)
    with _routing(model, settings.routed, task_ids):
        hidden = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)[0]
    # hidden: (batch, src_seq, d_model)

    # The choices of each example are consecutive rows of the decoder batch, so repeating each
    # example's encoder states, mask and task id once per choice lines them up with their rows.
    counts = torch.tensor([len(example.choices) for example in batch], device=settings.device)  # (batch,)
    choice_hidden = hidden.repeat_interleave(counts, dim=0)  # (rows, src_seq, d_model)
    choice_mask = attention_mask.repeat_interleave(counts, dim=0)  # (rows, src_seq)
    choice_tasks = task_ids.repeat_interleave(counts, dim=0)  # (rows,)
    choices = [choice for example in batch for choice in example.choices]
    labels = _encode_targets(tokenizer, choices, settings.device)  # (rows, tgt_seq)

    with _routing(model, settings.routed, choice_tasks):
        logits = model(
            attention_mask=choice_mask,
            encoder_outputs=BaseModelOutput(last_hidden_state=choice_hidden),
            labels=labels,
        ).logits  # (rows, tgt_seq, vocab)
    return _group(_sequence_scores(logits, labels, settings.length_normalize).tolist(), batch)


def _score_pairs(
    model: nn.Module,
    tokenizer: Any,
    pairs: Sequence[tuple[PromptedExample, str]],
    settings: _Settings,
) -> list[float]:
    """Score (example, choice) pairs with one full encoder-decoder forward over the pairs."""
    input_ids, attention_mask = _encode_inputs(
        tokenizer, [example.input_text for example, _ in pairs], settings.max_input_length, settings.device
    )  # (rows, src_seq) each
    labels = _encode_targets(tokenizer, [choice for _, choice in pairs], settings.device)  # (rows, tgt_seq)
    task_ids = torch.tensor([example.task_id for example, _ in pairs], device=settings.device)  # (rows,)
    with _routing(model, settings.routed, task_ids):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).logits
    return _sequence_scores(logits, labels, settings.length_normalize).tolist()


def _score_reencode(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[PromptedExample],
    batch_size: int,
    bar: tqdm,
    settings: _Settings,
) -> list[list[float]]:
    """Score every (example, choice) pair with a full forward, ``batch_size`` pairs at a time."""
    pairs = [(example, choice) for example in examples for choice in example.choices]
    # last_choice[k] is True when pair k is the last choice of its example, which is then done.
    last_choice = [index == len(example.choices) - 1 for example in examples for index in range(len(example.choices))]
    flat: list[float] = []
    for start in range(0, len(pairs), batch_size):
        flat += _score_pairs(model, tokenizer, pairs[start : start + batch_size], settings)
        bar.update(sum(last_choice[start : start + batch_size]))
    return _group(flat, examples)


def score_choices(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[PromptedExample],
    *,
    length_normalize: bool = True,
    batch_size: int = 32,
    reencode: bool = False,
    max_input_length: int | None = None,
    progress: bool = False,
) -> list[list[float]]:
    """Compute the log-likelihood of every answer choice of every example.

    Parameters
    ----------
    model
        An encoder-decoder model with the Hugging Face interface: ``get_encoder()``, and a forward
        that takes ``input_ids``, ``attention_mask``, ``encoder_outputs`` and ``labels`` and returns
        an object with ``logits`` of shape (rows, tgt_seq, vocab). When it has adapter layers, each
        row is routed by its example's ``task_id``.
    tokenizer
        The model's tokenizer; it must pad and append EOS to targets, as T5 tokenizers do.
    examples
        Examples with at least one choice each; the number of choices may differ between examples.
    length_normalize
        Divide each choice's summed log-probability by its number of target tokens (EOS included).
    batch_size
        Examples per encoder batch; the decoder then runs on all their choices together.
        With ``reencode=True``, (example, choice) pairs per forward.
    reencode
        Run one full forward per (example, choice) pair instead of encoding each input once.
        Both paths give the same scores up to floating-point rounding.
    max_input_length
        Truncate prompts to this many tokens; ``None`` keeps them whole.
    progress
        Show a tqdm progress bar over the examples.

    Returns
    -------
    list of list of float
        ``scores[i][j]`` is the score of ``examples[i].choices[j]``.

    Raises
    ------
    ValueError
        When an example has no choices, or ``batch_size`` is not a positive int.
    TypeError
        When ``model`` has no ``get_encoder()`` (it is not an encoder-decoder model).
    """
    _check_batch_size(batch_size)
    _check_examples(examples)
    if not callable(getattr(model, "get_encoder", None)):
        raise TypeError(
            f"model must be an encoder-decoder (seq2seq) model with get_encoder(), got {type(model).__name__}"
        )
    routed = bool(adapter_layers(model))
    device = _model_device(model)
    logger.debug(
        "scoring %d examples (%s, batch_size %d, routed %s)",
        len(examples),
        "re-encoding every choice" if reencode else "encoding each input once",
        batch_size,
        routed,
    )

    settings = _Settings(routed, length_normalize, max_input_length, device)
    scores: list[list[float]] = []
    bar = tqdm(total=len(examples), disable=not progress, desc="rank classification", unit="example")
    with torch.no_grad(), _eval_mode(model), bar:
        if reencode:
            scores = _score_reencode(model, tokenizer, examples, batch_size, bar, settings)
        else:
            for start in range(0, len(examples), batch_size):
                batch = examples[start : start + batch_size]
                scores += _score_encode_once(model, tokenizer, batch, settings)
                bar.update(len(batch))
    return scores


def rank_classify(
    model: nn.Module, tokenizer: Any, examples: Sequence[PromptedExample], **score_options: Any
) -> list[int]:
    """Predict the index of the highest-scoring choice of each example.

    ``score_options`` are passed to :func:`score_choices`. On a tie the first of the tied
    choices wins.
    """
    scores = score_choices(model, tokenizer, examples, **score_options)
    return [max(range(len(row)), key=row.__getitem__) for row in scores]


def accuracy(examples: Sequence[PromptedExample], predictions: Sequence[int]) -> float:
    """Return the fraction of examples whose predicted choice index equals ``label``.

    Raises
    ------
    ValueError
        When the lengths differ, there are no examples, or an example has no choices.
    """
    if len(examples) != len(predictions):
        raise ValueError(
            f"got {len(examples)} examples but {len(predictions)} predictions, expected one prediction per example"
        )
    if not examples:
        raise ValueError("examples is empty, so accuracy is undefined. Pass at least one example")
    _check_examples(examples)
    correct = sum(int(prediction == example.label) for example, prediction in zip(examples, predictions))
    return correct / len(examples)
