"""TensorPoly-I routing: one-hot weights pick one term, zero factors leave the base layer alone."""

import pytest
import torch
from torch import nn

from tensorpoly_tn import LoRALinear, MissingTaskIdsError, TensorPolyLinear, use_tasks
from tensorpoly_tn.routing import Router


def _layer(normalize="pairwise", n_terms=4, order=3):
    torch.manual_seed(1)
    base = nn.Linear(12, 10).double()
    return TensorPolyLinear(base, rank=2, n_tasks=3, n_terms=n_terms, order=order, normalize=normalize)


@pytest.mark.parametrize("normalize", ["none", "pairwise"])
def test_one_hot_routing_selects_that_term(normalize):
    layer = _layer(normalize)
    with torch.no_grad():
        layer.leaves_b.normal_()
        # A very large logit for term 2 of task 1 and very small ones elsewhere: sigmoid saturates
        # to exactly 1 and 0 in float64, so the weights are exactly one-hot.
        layer.router.logits.fill_(-1000.0)
        layer.router.logits[1, 2] = 1000.0
    a, b = layer.factors(torch.tensor([1]))
    terms_a, terms_b = layer.term_factors()
    torch.testing.assert_close(a[0], terms_a[2].T, rtol=0, atol=0)
    torch.testing.assert_close(b[0], terms_b[2], rtol=0, atol=0)


def test_weights_are_normalised_sigmoid():
    router = Router(2, 3)
    with torch.no_grad():
        router.logits.copy_(torch.tensor([[0.0, 0.0, 0.0], [1.0, -1.0, 2.0]]))
    weights = router(torch.tensor([0, 1]))
    s = torch.sigmoid(torch.tensor([1.0, -1.0, 2.0]))
    torch.testing.assert_close(weights[0], torch.full((3,), 1 / 3))
    torch.testing.assert_close(weights[1], s / s.sum())


@pytest.mark.parametrize("normalize", ["none", "pairwise"])
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_initial_layer_equals_base(normalize, order):
    layer = _layer(normalize, order=order)
    x = torch.randn(3, 5, 12, dtype=torch.float64)
    with use_tasks(layer, [0, 1, 2]):
        output = layer(x)
    torch.testing.assert_close(output, layer.base_layer(x), rtol=0, atol=0)


def test_zero_leaves_b_leave_base_output_unchanged():
    layer = _layer("none")
    with torch.no_grad():
        layer.leaves_a.normal_()
        layer.leaves_b.zero_()
        layer.router.logits.normal_()
    x = torch.randn(2, 12, dtype=torch.float64)
    with use_tasks(layer, 2):
        output = layer(x)
    torch.testing.assert_close(output, layer.base_layer(x), rtol=0, atol=0)


def test_zero_lora_b_leaves_base_output_unchanged():
    base = nn.Linear(6, 4)
    layer = LoRALinear(base, rank=2)
    x = torch.randn(3, 6)
    torch.testing.assert_close(layer(x), base(x), rtol=0, atol=0)


def test_initial_gradient_reaches_leaves_b():
    layer = _layer("none")
    with use_tasks(layer, [0, 1]):
        layer(torch.randn(2, 4, 12, dtype=torch.float64)).sum().backward()
    assert layer.leaves_b.grad is not None
    assert layer.leaves_b.grad.abs().sum() > 0


def test_forward_without_task_ids_raises():
    layer = _layer()
    with pytest.raises(MissingTaskIdsError, match="use_tasks"):
        layer(torch.randn(2, 12, dtype=torch.float64))


def test_task_id_outside_router_raises():
    layer = _layer()
    with pytest.raises(ValueError, match="task id 3 is outside the router, which has 3 tasks"):
        with use_tasks(layer, [0, 3]):
            pass
    with pytest.raises(ValueError, match="task id -1 is outside"):
        layer.router(torch.tensor([-1]))


def test_task_ids_must_match_batch():
    layer = _layer()
    with use_tasks(layer, [0, 1, 2]):
        with pytest.raises(ValueError, match="3 task ids but the input batch has 2 rows"):
            layer(torch.randn(2, 12, dtype=torch.float64))


def test_task_ids_cleared_after_error():
    layer = _layer()
    with pytest.raises(RuntimeError):
        with use_tasks(layer, 1):
            raise RuntimeError("boom")
    assert layer.task_ids is None


@pytest.mark.parametrize("name, value", [("order", 0), ("n_terms", 0), ("rank", 0), ("n_terms", -2)])
def test_sizes_below_one_raise(name, value):
    arguments = {"rank": 2, "n_tasks": 2, "n_terms": 2, "order": 2}
    arguments[name] = value
    with pytest.raises(ValueError, match=f"{name} must be an integer >= 1, got {value}"):
        TensorPolyLinear(nn.Linear(4, 4), **arguments)


def test_unknown_normalize_raises():
    with pytest.raises(ValueError, match="normalize must be one of"):
        TensorPolyLinear(nn.Linear(4, 4), rank=1, n_tasks=1, n_terms=1, order=2, normalize="layer")
