"""Every method: factors against NumPy references, start equal to the base model, config checks, dtypes."""

import numpy as np
import pytest
import torch
from reference import numpy_factor, numpy_tree_kron
from tiny_models import tiny_t5

from tensorpoly_tn import (
    METHODS,
    MHRLinear,
    PolyLinear,
    TensorPoly2Linear,
    TensorPolyConfig,
    TLoRALinear,
    adapter_layers,
    apply_adapters,
    use_tasks,
)
from tensorpoly_tn.layers import register_method


def _tiny_t5(seed=0):
    return tiny_t5(seed)


def _config(method, **overrides):
    values = dict(method=method, n_tasks=3, rank=2, n_terms=3, n_skills=3, order=2)
    if method == "mhr":
        values["n_splits"] = 2
    values.update(overrides)
    return TensorPolyConfig(**values)


def _randomise(model, seed=1):
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.normal_(0.0, 0.3)


def _linear(d_in=12, d_out=10):
    torch.manual_seed(0)
    return torch.nn.Linear(d_in, d_out).double()


@pytest.mark.parametrize("method", METHODS)
def test_adapted_equals_base_at_start(method):
    base, adapted = _tiny_t5(seed=4), _tiny_t5(seed=4)
    apply_adapters(adapted, _config(method, order=3))
    ids, labels = torch.randint(3, 300, (3, 6)), torch.randint(3, 300, (3, 4))
    with torch.no_grad(), use_tasks(adapted, [0, 1, 2]):
        adapted_logits = adapted(input_ids=ids, labels=labels).logits
    with torch.no_grad():
        base_logits = base(input_ids=ids, labels=labels).logits
    torch.testing.assert_close(adapted_logits, base_logits, rtol=0, atol=0)


@pytest.mark.parametrize("normalize", ["none", "pairwise"])
@pytest.mark.parametrize("order", [2, 3])
def test_tensorpoly2_factors_match_numpy(order, normalize):
    layer = TensorPoly2Linear(_linear(), rank=2, n_tasks=3, n_terms=4, order=order, normalize=normalize)
    with torch.no_grad():
        layer.leaves_b.normal_()
        layer.router.logits.normal_()
    a, b = layer.factors(torch.tensor([2, 0]))
    weights = layer.router.weights(torch.tensor([2, 0])).detach().double().numpy()  # (batch, order, term)
    for row in range(2):
        for factor, leaves, width in ((a[row], layer.leaves_a, 12), (b[row].T, layer.leaves_b, 10)):
            leaves = leaves.detach().numpy()
            expected = np.zeros((width, 2))
            for j in range(2):
                mixed = [weights[row, n] @ leaves[n, :, j] for n in range(order)]
                expected[:, j] = numpy_tree_kron(mixed, normalize == "pairwise")[:width]
            np.testing.assert_allclose(factor.detach().numpy(), expected, rtol=1e-10, atol=1e-12)


def test_tlora_factors_are_unweighted_term_sums():
    layer = TLoRALinear(_linear(), rank=3, n_terms=2, order=3, normalize="pairwise")
    with torch.no_grad():
        layer.leaves_b.normal_()
    a, b = layer.factors(None)
    assert a.shape == (1, 12, 3)
    assert b.shape == (1, 3, 10)
    ones = np.ones(2)
    np.testing.assert_allclose(a[0].detach().numpy(), numpy_factor(layer.leaves_a.detach().numpy(), ones, 12, True))
    np.testing.assert_allclose(b[0].T.detach().numpy(), numpy_factor(layer.leaves_b.detach().numpy(), ones, 10, True))


def test_mhr_factors_concatenate_routed_heads():
    layer = MHRLinear(_linear(), rank=2, n_tasks=2, n_skills=3, n_splits=2)
    with torch.no_grad():
        layer.poly_lora_b.normal_()
        layer.router.logits.normal_()
    a, b = layer.factors(torch.tensor([1]))
    weights = layer.router.weights(torch.tensor([1]))[0].double()  # (split, skill)
    for head in range(2):
        head_a = torch.einsum("m,mur->ur", weights[head], layer.poly_lora_a[head])
        head_b = torch.einsum("m,mrv->rv", weights[head], layer.poly_lora_b[head])
        torch.testing.assert_close(a[0, head * 6 : (head + 1) * 6], head_a)
        torch.testing.assert_close(b[0, :, head * 5 : (head + 1) * 5], head_b)


def test_poly_split_must_divide_widths():
    with pytest.raises(ValueError, match="n_splits must divide the layer's out_features; got n_splits=4 and out_features=10"):
        PolyLinear(_linear(), rank=2, n_tasks=2, n_skills=2, n_splits=4)


def test_config_json_round_trip_keeps_new_fields():
    config = _config("mhr", n_splits=4, selector="relaxed-bernoulli", router_only=True, tuned_task=2)
    assert TensorPolyConfig.from_json(config.to_json()) == config
    unfused = _config("tensorpoly-2", fused_training=False)
    assert TensorPolyConfig.from_json(unfused.to_json()).fused_training is False


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(method="poly", n_splits=2), "method 'poly' routes whole skills, so n_splits must be 1, got 2"),
        (dict(method="mhr", n_splits=1), "method 'mhr' needs n_splits >= 2 routed heads, got 1"),
        (dict(method="nope"), r"unknown method 'nope': method must be one of the registered methods \["),
        (dict(selector="argmax"), r"unknown selector 'argmax': selector must be one of the registered selectors \["),
        (dict(method="poly", selector="private", n_skills=4), r"experts \(4, from n_skills\) must equal n_tasks \(3\)"),
        (dict(method="lora", router_only=True), "method 'lora' has none"),
        (dict(router_only=True, selector="uniform"), "selector 'uniform' ignores the router logits"),
        (dict(tuned_task=1), "tuned_task=1 needs router_only=True"),
        (dict(router_only=True, tuned_task=3), r"tuned_task must be a task id in \[0, 3\), got 3"),
        (dict(n_skills=0), "n_skills must be an integer >= 1, got 0"),
        (dict(fused_training="yes"), "fused_training must be True or False, got 'yes'"),
    ],
)
def test_invalid_config_raises(overrides, message):
    values = dict(method="tensorpoly-1", n_tasks=3, n_terms=3, n_skills=3)
    values.update(overrides)
    with pytest.raises(ValueError, match=message):
        TensorPolyConfig(**values)


def test_duplicate_method_rejected():
    with pytest.raises(ValueError, match="method 'poly' is already registered"):
        register_method("poly", lambda base_layer, config: None)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("method", METHODS)
def test_half_precision_follows_base_dtype(method, dtype):
    model = _tiny_t5().to(dtype)
    apply_adapters(model, _config(method))
    _randomise(model)
    for layer in adapter_layers(model).values():
        for name, parameter in layer.named_parameters():
            if not name.startswith("router."):
                assert parameter.dtype == dtype, name
    ids = torch.randint(3, 300, (2, 5))
    with torch.no_grad(), use_tasks(model, [0, 2]):
        logits = model(input_ids=ids, decoder_input_ids=ids[:, :3]).logits
    assert logits.dtype == dtype
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("method", ["poly", "tensorpoly-2"])
def test_router_only_trains_one_task_row(method):
    model = _tiny_t5()
    apply_adapters(model, _config(method, router_only=True, tuned_task=1))
    _randomise(model)  # only the tuned rows are trainable, so only they are randomised
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.endswith("router.tuned_logits") for name in trainable)
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=0.1)
    ids = torch.randint(3, 300, (2, 5))
    with use_tasks(model, 1):
        model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    for name, parameter in model.named_parameters():
        if name in frozen:
            assert torch.equal(parameter, frozen[name]), name


def test_adapters_follow_the_models_training_mode():
    model = _tiny_t5()  # in eval mode
    apply_adapters(model, _config("poly", selector="relaxed-bernoulli"))
    assert not any(module.training for module in model.modules())
    trained = _tiny_t5().train()
    apply_adapters(trained, _config("poly"))
    assert all(layer.router.training for layer in adapter_layers(trained).values())


@pytest.mark.parametrize("dtype, expected", [(torch.bfloat16, torch.float32), (torch.float32, torch.float32),
                                             (torch.float64, torch.float64)])
@pytest.mark.parametrize("method", ["poly", "mhr", "tensorpoly-1", "tensorpoly-2"])
def test_router_logits_keep_full_precision(method, dtype, expected):
    model = _tiny_t5().to(dtype)
    apply_adapters(model, _config(method))
    for layer in adapter_layers(model).values():
        assert layer.router.logits.dtype == expected
