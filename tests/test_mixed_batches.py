"""Mixed-task batches, generate() with beams, and rank classification with repeated rows."""

import pytest
import torch
from tiny_models import tiny_t5

from tensorpoly_tn import METHODS, TensorPolyConfig, apply_adapters, use_tasks

ROUTED = [method for method in METHODS if method not in ("lora", "tlora")]


def _tiny_t5(seed=0):
    return tiny_t5(seed)


def _adapted(method, selector="sigmoid", seed=2):
    # float64, so that rows computed in a batch or alone agree to 1e-10 despite different kernels
    model = _tiny_t5().double()
    n_splits = 2 if method == "mhr" else 1
    apply_adapters(
        model,
        TensorPolyConfig(method=method, n_tasks=3, rank=2, n_terms=3, n_skills=3, n_splits=n_splits, selector=selector),
    )
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.normal_(0.0, 0.5)
    return model


@pytest.mark.parametrize("method", METHODS)
def test_mixed_batch_rows_equal_rows_alone(method):
    model = _adapted(method)
    ids, labels = torch.randint(3, 300, (4, 6)), torch.randint(3, 300, (4, 3))
    tasks = [2, 0, 2, 1]
    with torch.no_grad(), use_tasks(model, tasks):
        batch_logits = model(input_ids=ids, labels=labels).logits
    for row, task in enumerate(tasks):
        with torch.no_grad(), use_tasks(model, task):
            row_logits = model(input_ids=ids[row : row + 1], labels=labels[row : row + 1]).logits
        torch.testing.assert_close(batch_logits[row : row + 1], row_logits, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ROUTED)
def test_tasks_give_different_outputs(method):
    model = _adapted(method)
    ids = torch.randint(3, 300, (1, 6)).expand(3, -1)
    with torch.no_grad(), use_tasks(model, [0, 1, 2]):
        logits = model(input_ids=ids, decoder_input_ids=ids[:, :2]).logits
    assert not torch.allclose(logits[0], logits[1])
    assert not torch.allclose(logits[1], logits[2])


@pytest.mark.parametrize("selector", ["straight-through", "uniform", "relaxed-bernoulli"])
def test_mixed_batch_with_other_selectors(selector):
    model = _adapted("poly", selector=selector)
    ids = torch.randint(3, 300, (3, 5))
    with torch.no_grad(), use_tasks(model, [1, 0, 1]):
        batch_logits = model(input_ids=ids, decoder_input_ids=ids[:, :2]).logits
    with torch.no_grad(), use_tasks(model, 0):
        alone = model(input_ids=ids[1:2], decoder_input_ids=ids[1:2, :2]).logits
    torch.testing.assert_close(batch_logits[1:2], alone, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ["poly", "tensorpoly-2"])
def test_generate_with_beams_keeps_each_rows_task(method):
    model = _adapted(method)
    ids = torch.randint(3, 300, (2, 6))
    options = dict(max_new_tokens=4, num_beams=3, num_return_sequences=2, do_sample=False)
    with torch.no_grad(), use_tasks(model, [2, 0]):
        together = model.generate(input_ids=ids, **options)
    for row, task in enumerate([2, 0]):
        with torch.no_grad(), use_tasks(model, task):
            alone = model.generate(input_ids=ids[row : row + 1], **options)
        assert torch.equal(together[2 * row : 2 * row + 2, : alone.shape[1]], alone)


def test_generate_sequences_differ_by_task():
    model = _adapted("tensorpoly-1")
    ids = torch.randint(3, 300, (1, 6)).expand(3, -1)
    with torch.no_grad(), use_tasks(model, [0, 1, 2]):
        scores = model.generate(input_ids=ids, max_new_tokens=3, output_scores=True, return_dict_in_generate=True).scores
    assert not torch.allclose(scores[0][0], scores[0][1])


def test_rank_classification_repeats_keep_tasks():
    """Each example repeated once per answer choice, consecutively, keeps its own task."""
    model = _adapted("mhr")
    ids = torch.randint(3, 300, (2, 6))
    choices = torch.randint(3, 300, (3, 2))  # (choice, label length)
    repeated_ids = ids.repeat_interleave(3, dim=0)  # (example * choice, seq)
    repeated_labels = choices.repeat(2, 1)  # (example * choice, label length)
    with torch.no_grad(), use_tasks(model, [1, 2]):  # one id per example, expanded inside the layers
        short = model(input_ids=repeated_ids, labels=repeated_labels).logits
    with torch.no_grad(), use_tasks(model, [1, 1, 1, 2, 2, 2]):  # already expanded ids
        expanded = model(input_ids=repeated_ids, labels=repeated_labels).logits
    torch.testing.assert_close(short, expanded, rtol=0, atol=0)
    with torch.no_grad(), use_tasks(model, 2):
        alone = model(input_ids=repeated_ids[3:], labels=repeated_labels[3:]).logits
    torch.testing.assert_close(short[3:], alone, rtol=1e-10, atol=1e-10)


def test_task_count_not_dividing_batch_raises():
    model = _adapted("poly")
    ids = torch.randint(3, 300, (3, 4))
    with use_tasks(model, [0, 1]), pytest.raises(ValueError, match="2 task ids but the input batch has 3 rows"):
        model(input_ids=ids, decoder_input_ids=ids)
