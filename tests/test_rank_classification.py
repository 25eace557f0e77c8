"""Tests of rank classification: exact scores on a model with known probabilities, and the
encode-once path against one full forward per choice on a tiny T5 with TensorPoly adapters."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import transformers
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from tensorpoly_tn import TensorPolyConfig, adapter_layers, apply_adapters
from tensorpoly_tn.data.example import PromptedExample
from tensorpoly_tn.evaluation import accuracy, rank_classify, score_choices
from tensorpoly_tn.models import build_preset_model

VOCAB = 384  # ByT5 gives byte b the id b + 3, after pad 0, eos 1 and unk 2
EOS = 1


def byte_id(character: str) -> int:
    return ord(character) + 3


class ConstantSeq2Seq(nn.Module):
    """A seq2seq stand-in whose next-token distribution is ``probabilities`` at every step.

    The score of a target is then the sum of log-probabilities of its tokens, computable by hand.
    The encoder embeds ids as one float each and records the shape of every batch it encodes.
    """

    def __init__(self, probabilities: torch.Tensor) -> None:
        super().__init__()
        self.log_probabilities = nn.Parameter(probabilities.log())  # (vocab,)
        self.encoder_batches: list[tuple[int, int]] = []  # (rows, src_seq) per encoder call
        self.decoder_calls: list[dict[str, object]] = []

    def get_encoder(self):
        def encode(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> BaseModelOutput:
            self.encoder_batches.append(tuple(input_ids.shape))
            return BaseModelOutput(last_hidden_state=input_ids.float().unsqueeze(-1))

        return encode

    def forward(self, input_ids=None, attention_mask=None, labels=None, encoder_outputs=None):
        if encoder_outputs is None:
            encoder_outputs = self.get_encoder()(input_ids, attention_mask)
        hidden = encoder_outputs[0]  # (rows, src_seq, 1)
        assert hidden.shape[:2] == attention_mask.shape
        self.decoder_calls.append(
            {"reused_encoder": input_ids is None, "grad_enabled": torch.is_grad_enabled(), "training": self.training}
        )
        rows, tgt_seq = labels.shape
        return SimpleNamespace(logits=self.log_probabilities.expand(rows, tgt_seq, -1))


def known_probabilities(assigned: dict[int, float]) -> torch.Tensor:
    """Return a distribution over the vocab with the given ids fixed and the rest uniform."""
    rest = (1.0 - sum(assigned.values())) / (VOCAB - len(assigned))
    probabilities = torch.full((VOCAB,), rest, dtype=torch.float64)
    for token, probability in assigned.items():
        probabilities[token] = probability
    return probabilities.float()


P_EOS, P_A, P_B = 0.5, 0.05, 0.3


@pytest.fixture
def constant_model() -> ConstantSeq2Seq:
    return ConstantSeq2Seq(known_probabilities({EOS: P_EOS, byte_id("a"): P_A, byte_id("b"): P_B}))


@pytest.fixture
def tokenizer() -> transformers.ByT5Tokenizer:
    return transformers.ByT5Tokenizer()


def example(input_text: str, choices: tuple[str, ...], label: int = 0, task_id: int = 0) -> PromptedExample:
    return PromptedExample(input_text, choices[label], choices, label, task_id)


# "a" + EOS has one unlikely token and "bbbb" + EOS has four likelier ones. Summed, the short
# choice wins, but divided by length, the long one does.
SUM_A = math.log(P_A) + math.log(P_EOS)
SUM_BBBB = 4 * math.log(P_B) + math.log(P_EOS)


@pytest.mark.parametrize("reencode", [False, True])
def test_summed_scores_match_hand_computed(constant_model, tokenizer, reencode: bool) -> None:
    examples = [example("prompt one", ("a", "bbbb")), example("a longer second prompt", ("bbbb", "a", "a"))]

    scores = score_choices(constant_model, tokenizer, examples, length_normalize=False, reencode=reencode)

    assert scores[0] == pytest.approx([SUM_A, SUM_BBBB], abs=1e-5)
    assert scores[1] == pytest.approx([SUM_BBBB, SUM_A, SUM_A], abs=1e-5)


@pytest.mark.parametrize("reencode", [False, True])
def test_normalized_scores_match_hand_computed(constant_model, tokenizer, reencode: bool) -> None:
    examples = [example("prompt", ("a", "bbbb"))]

    scores = score_choices(constant_model, tokenizer, examples, length_normalize=True, reencode=reencode)

    assert scores[0] == pytest.approx([SUM_A / 2, SUM_BBBB / 5], abs=1e-5)


@pytest.mark.parametrize("reencode", [False, True])
def test_length_normalization_changes_prediction(constant_model, tokenizer, reencode: bool) -> None:
    examples = [example("prompt", ("a", "bbbb")), example("prompt", ("bbbb", "a"))]

    summed = rank_classify(constant_model, tokenizer, examples, length_normalize=False, reencode=reencode)
    normalized = rank_classify(constant_model, tokenizer, examples, length_normalize=True, reencode=reencode)

    assert SUM_A > SUM_BBBB
    assert SUM_A / 2 < SUM_BBBB / 5
    assert summed == [0, 1]
    assert normalized == [1, 0]


def test_encoder_runs_once_per_input(constant_model, tokenizer) -> None:
    examples = [example("p1", ("a", "b")), example("p22", ("a", "b", "bb", "a")), example("p333", ("b", "a"))]

    score_choices(constant_model, tokenizer, examples, batch_size=2)

    assert [rows for rows, _ in constant_model.encoder_batches] == [2, 1]
    assert all(call["reused_encoder"] for call in constant_model.decoder_calls)


def test_reencode_runs_encoder_per_choice(constant_model, tokenizer) -> None:
    examples = [example("p1", ("a", "b")), example("p22", ("a", "b", "bb", "a"))]

    score_choices(constant_model, tokenizer, examples, batch_size=4, reencode=True)

    assert [rows for rows, _ in constant_model.encoder_batches] == [4, 2]
    assert not any(call["reused_encoder"] for call in constant_model.decoder_calls)


def test_max_input_length_truncates(constant_model, tokenizer) -> None:
    examples = [example("x" * 50, ("a", "b"))]

    score_choices(constant_model, tokenizer, examples, max_input_length=8)

    assert constant_model.encoder_batches == [(1, 8)]


def test_scoring_without_grad_in_eval_mode(constant_model, tokenizer) -> None:
    constant_model.train()
    inner = nn.Linear(1, 1).eval()
    constant_model.inner = inner  # a submodule whose own mode must come back unchanged

    score_choices(constant_model, tokenizer, [example("p", ("a", "b"))])

    assert constant_model.decoder_calls == [{"reused_encoder": True, "grad_enabled": False, "training": False}]
    assert constant_model.training
    assert not inner.training


def test_ties_go_to_first_choice(tokenizer) -> None:
    model = ConstantSeq2Seq(known_probabilities({EOS: 0.5, byte_id("a"): 0.2, byte_id("b"): 0.2}))
    examples = [example("p", ("a", "b")), example("p", ("b", "a")), example("p", ("bb", "a", "b"))]

    assert rank_classify(model, tokenizer, examples) == [0, 0, 1]


def test_progress_bar_on_stderr(constant_model, tokenizer, capsys) -> None:
    score_choices(constant_model, tokenizer, [example("p", ("a", "b"))] * 3, batch_size=2, progress=True)

    assert "rank classification" in capsys.readouterr().err


def test_example_without_choices_rejected(constant_model, tokenizer) -> None:
    examples = [example("p", ("a", "b")), PromptedExample("generate this", "target")]

    with pytest.raises(ValueError, match=r"example 1 has no answer choices \(input_text 'generate this'\)"):
        score_choices(constant_model, tokenizer, examples)


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, True])
def test_invalid_batch_size_rejected(constant_model, tokenizer, batch_size) -> None:
    with pytest.raises(ValueError, match=r"batch_size must be a positive int, got"):
        score_choices(constant_model, tokenizer, [example("p", ("a",))], batch_size=batch_size)


def test_model_without_encoder_rejected(tokenizer) -> None:
    with pytest.raises(TypeError, match=r"encoder-decoder \(seq2seq\) model with get_encoder\(\), got Linear"):
        score_choices(nn.Linear(2, 2), tokenizer, [example("p", ("a",))])


def test_accuracy_counts_matches() -> None:
    examples = [example("p", ("a", "b"), label=1), example("p", ("a", "b"), label=0), example("p", ("a",))]

    assert accuracy(examples, [1, 1, 0]) == pytest.approx(2 / 3)


def test_accuracy_length_mismatch_rejected() -> None:
    with pytest.raises(ValueError, match="got 1 examples but 2 predictions"):
        accuracy([example("p", ("a", "b"))], [0, 1])


def test_accuracy_empty_rejected() -> None:
    with pytest.raises(ValueError, match="examples is empty, so accuracy is undefined"):
        accuracy([], [])


# --- the tiny T5 with TensorPoly adapters ---


def adapted_tiny_t5(n_tasks: int = 3) -> nn.Module:
    """Build the tiny T5 with TensorPoly adapters whose update and routing differ between tasks.

    At initialisation the last leaf of B is zero, so every task gives the base model. B and the
    router logits are redrawn here so that the task of a row changes its scores.
    """
    model = build_preset_model("tiny", seed=0)
    apply_adapters(model, TensorPolyConfig(n_tasks=n_tasks, rank=4, n_terms=4))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            layer.leaves_b.copy_(0.5 * torch.randn(layer.leaves_b.shape, generator=generator))
            layer.router.logits.copy_(2.0 * torch.randn(layer.router.logits.shape, generator=generator))
    return model


MIXED_EXAMPLES = [
    example("Is the sky blue? Answer yes or no.", ("yes", "no"), task_id=0),
    example("Pick the colour of grass:", ("red", "green", "blue", "a shade of purple"), label=1, task_id=2),
    example("2 + 2 =", ("four", "5"), task_id=1),
    example("Which word is a verb?", ("run", "table", "quickly"), label=0, task_id=2),
    example("Short", ("a", "bb"), task_id=0),
]


@pytest.mark.parametrize("length_normalize", [False, True])
@pytest.mark.parametrize("batch_size", [2, 5])
def test_encode_once_matches_reencode(tokenizer, length_normalize: bool, batch_size: int) -> None:
    model = adapted_tiny_t5()

    once = score_choices(model, tokenizer, MIXED_EXAMPLES, length_normalize=length_normalize, batch_size=batch_size)
    again = score_choices(
        model, tokenizer, MIXED_EXAMPLES, length_normalize=length_normalize, batch_size=3, reencode=True
    )

    assert [len(row) for row in once] == [2, 4, 2, 3, 2]
    for row_once, row_again in zip(once, again):
        torch.testing.assert_close(torch.tensor(row_once), torch.tensor(row_again), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("reencode", [False, True])
def test_task_id_routes_each_row(tokenizer, reencode: bool) -> None:
    model = adapted_tiny_t5()
    first, second = MIXED_EXAMPLES[0], MIXED_EXAMPLES[1]
    moved = PromptedExample(second.input_text, second.target_text, second.choices, second.label, task_id=0)

    before = score_choices(model, tokenizer, [first, second], reencode=reencode)
    after = score_choices(model, tokenizer, [first, moved], reencode=reencode)

    torch.testing.assert_close(torch.tensor(after[0]), torch.tensor(before[0]), atol=1e-5, rtol=1e-5)
    assert (torch.tensor(after[1]) - torch.tensor(before[1])).abs().max() > 1e-3


def test_task_id_outside_router_rejected(tokenizer) -> None:
    model = adapted_tiny_t5(n_tasks=3)

    with pytest.raises(ValueError, match="task id 3 is outside the router, which has 3 tasks"):
        score_choices(model, tokenizer, [example("p", ("a", "b"), task_id=3)])


def test_model_without_adapters_ignores_task_ids(tokenizer) -> None:
    model = build_preset_model("tiny", seed=0)
    examples = [example("p", ("a", "b"), task_id=7), example("q", ("c", "dd", "e"), task_id=0)]

    once = score_choices(model, tokenizer, examples)
    again = score_choices(model, tokenizer, examples, reencode=True)

    for row_once, row_again in zip(once, again):
        torch.testing.assert_close(torch.tensor(row_once), torch.tensor(row_again), atol=1e-5, rtol=1e-5)
