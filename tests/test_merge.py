"""merge (routed layers -> plain LoRA per task) and merge_into_base (folded into the linear weight)."""

import copy

import pytest
import torch
from tiny_models import tiny_t5

from tensorpoly_tn import (
    METHODS,
    LoRALinear,
    TensorPolyConfig,
    adapter_layers,
    apply_adapters,
    merge,
    merge_into_base,
    task_factors,
    use_tasks,
)


def _tiny_t5(seed=0):
    return tiny_t5(seed).double()


def _adapted(method, selector="sigmoid"):
    model = _tiny_t5()
    n_splits = 2 if method == "mhr" else 1
    config = TensorPolyConfig(
        method=method, n_tasks=3, rank=2, n_terms=3, n_skills=3, n_splits=n_splits, selector=selector
    )
    apply_adapters(model, config)
    torch.manual_seed(9)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.normal_(0.0, 0.5)
    return model


def _logits(model, task=None):
    torch.manual_seed(0)
    ids, labels = torch.randint(3, 300, (2, 6)), torch.randint(3, 300, (2, 4))
    with torch.no_grad():
        if task is None:
            return model(input_ids=ids, labels=labels).logits
        with use_tasks(model, task):
            return model(input_ids=ids, labels=labels).logits


@pytest.mark.parametrize("method", METHODS)
def test_merge_gives_plain_lora_with_same_outputs(method):
    model = _adapted(method)
    expected = _logits(model, task=2)
    merge(model, 2)
    layers = adapter_layers(model)
    assert layers and all(type(layer) is LoRALinear for layer in layers.values())
    torch.testing.assert_close(_logits(model), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_merge_into_base_leaves_plain_linears(method):
    model = _adapted(method)
    expected = _logits(model, task=1)
    merge_into_base(model, 1)
    assert not adapter_layers(model)
    assert type(model.encoder.block[0].layer[0].SelfAttention.q) is torch.nn.Linear
    assert not any(p.requires_grad for p in model.parameters())
    torch.testing.assert_close(_logits(model), expected, rtol=1e-9, atol=1e-9)


def test_merge_uses_evaluation_routing_during_training():
    model = _adapted("poly", selector="relaxed-bernoulli")
    expected = _logits(model, task=0)  # the model is in eval mode: sigmoid weights
    model.train()
    layer = next(iter(adapter_layers(model).values()))
    a, b = task_factors(layer, 0)
    assert layer.training
    eval_copy = copy.deepcopy(layer).eval()
    a_eval, b_eval = eval_copy.factors(torch.tensor([0]))
    torch.testing.assert_close(a, a_eval[0])
    torch.testing.assert_close(b, b_eval[0])
    merge(model, 0)
    model.eval()
    torch.testing.assert_close(_logits(model), expected, rtol=1e-10, atol=1e-10)


def test_merge_keeps_half_precision():
    model = _adapted("tensorpoly-2").to(torch.bfloat16)
    merge_into_base(model, 0)
    assert model.encoder.block[0].layer[0].SelfAttention.q.weight.dtype == torch.bfloat16


def test_merge_errors():
    with pytest.raises(ValueError, match="the model has no adapter layers to merge"):
        merge(_tiny_t5(), 0)
    model = _adapted("tensorpoly-1")
    with pytest.raises(ValueError, match="task id 5 is outside the router, which has 3 tasks"):
        merge_into_base(model, 5)
    with pytest.raises(TypeError, match="task must be an int task id, got str '1'"):
        merge(model, "1")
    layer = next(iter(adapter_layers(model).values()))
    with pytest.raises(TypeError, match="for one layer call tensorpoly_tn.task_factors"):
        merge(layer, 0)
