"""The planner against materialised references: random networks, TLoRA, gradients, dtypes and layers."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from network_strategies import random_networks
from torch import nn

from tensorpoly_tn import LoRALinear, TensorPolyLinear, use_tasks
from tensorpoly_tn.layers.base import AdapterLinear
from tensorpoly_tn.planner import STRATEGIES, plan
from tensorpoly_tn.planner.adapters import tlora_network, tlora_update
from tensorpoly_tn.tlora import kron_leaves, leaf_length

SETTINGS = settings(max_examples=12, deadline=None)


def _reference(x, leaves_a, leaves_b, d_out, normalize, weights):
    """Materialise A and B with kron_leaves, then bmm: the hand-written path."""
    terms_a = kron_leaves(leaves_a, x.shape[-1], normalize)  # (term, rank, d_in)
    terms_b = kron_leaves(leaves_b, d_out, normalize)  # (term, rank, d_out)
    if weights is None:
        weights = torch.ones(x.shape[0], terms_a.shape[0], dtype=x.dtype)
    a = torch.einsum("bk,kri->bir", weights, terms_a)
    b = torch.einsum("bk,kro->bro", weights, terms_b)
    return torch.bmm(torch.bmm(x, a), b)


tlora_configs = st.fixed_dictionaries({
    "order": st.integers(1, 8),
    "d_in": st.sampled_from([1, 3, 5, 7, 10, 12, 19]),
    "d_out": st.sampled_from([1, 2, 6, 9, 11, 15]),
    "n_terms": st.integers(1, 3),
    "rank": st.integers(1, 3),
    "batch": st.integers(1, 3),
    "seq": st.integers(1, 3),
    "normalize": st.sampled_from(["none", "pairwise"]),
    "routed": st.booleans(),
    "strategy": st.sampled_from(("auto",) + STRATEGIES),
})


def _tlora_tensors(config, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    order, terms, rank = config["order"], config["n_terms"], config["rank"]
    leaf_in, leaf_out = leaf_length(config["d_in"], order), leaf_length(config["d_out"], order)
    x = torch.randn(config["batch"], config["seq"], config["d_in"], generator=generator, dtype=dtype)
    leaves_a = torch.randn(order, terms, rank, leaf_in, generator=generator, dtype=dtype)
    leaves_b = torch.randn(order, terms, rank, leaf_out, generator=generator, dtype=dtype)
    weights = torch.rand(config["batch"], terms, generator=generator, dtype=dtype) if config["routed"] else None
    return x, leaves_a, leaves_b, weights


def _planned(config, x, leaves_a, leaves_b, weights):
    try:
        return tlora_update(x, leaves_a, leaves_b, config["d_out"], config["normalize"], weights, config["strategy"])
    except ValueError as error:
        # A forced strategy may not apply (order 1 has one node per factor, so no groups).
        assert "does not apply" in str(error)
        return tlora_update(x, leaves_a, leaves_b, config["d_out"], config["normalize"], weights)


@SETTINGS
@given(tlora_configs)
def test_tlora_plan_equals_materialised(config):
    x, leaves_a, leaves_b, weights = _tlora_tensors(config)
    expected = _reference(x, leaves_a, leaves_b, config["d_out"], config["normalize"], weights)
    result = _planned(config, x, leaves_a, leaves_b, weights)
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-10)


@SETTINGS
@given(tlora_configs)
def test_tlora_gradients_equal_materialised(config):
    tensors = [t for t in _tlora_tensors(config) if t is not None]
    for tensor in tensors:
        tensor.requires_grad_(True)
    weights = tensors[3] if config["routed"] else None
    expected = _reference(*tensors[:3], config["d_out"], config["normalize"], weights)
    grads_expected = torch.autograd.grad(expected.square().sum(), tensors)
    result = _planned(config, *tensors[:3], weights)
    grads = torch.autograd.grad(result.square().sum(), tensors)
    for grad, grad_expected in zip(grads, grads_expected):
        torch.testing.assert_close(grad, grad_expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("order, normalize", [(1, "none"), (2, "pairwise"), (3, "none"), (4, "pairwise")])
def test_tlora_gradcheck(order, normalize):
    config = {"order": order, "d_in": 5, "d_out": 3, "n_terms": 2, "rank": 2, "batch": 2, "seq": 2,
              "normalize": normalize, "routed": True, "strategy": "auto"}
    tensors = [t.requires_grad_(True) for t in _tlora_tensors(config)]

    def function(x, leaves_a, leaves_b, weights):
        return tlora_update(x, leaves_a, leaves_b, 3, normalize, weights)

    assert torch.autograd.gradcheck(function, tensors, fast_mode=True)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_tlora_low_precision_within_tolerance(dtype, tolerance):
    """float32 within 1e-5 and bfloat16 within 3e-2 of the float64 result, relative to its largest entry."""
    config = {"order": 3, "d_in": 19, "d_out": 11, "n_terms": 3, "rank": 3, "batch": 2, "seq": 3,
              "normalize": "pairwise", "routed": True, "strategy": "auto"}
    tensors = _tlora_tensors(config)
    expected = _reference(*tensors[:3], 11, "pairwise", tensors[3])
    result = tlora_update(*[t.to(dtype) for t in tensors[:3]], 11, "pairwise", tensors[3].to(dtype))
    assert result.dtype == dtype
    error = (result.double() - expected).abs().max() / expected.abs().max()
    assert error < tolerance


@SETTINGS
@given(random_networks(), st.sampled_from(("auto",) + STRATEGIES))
def test_random_network_equals_einsum(case, strategy):
    net, output = case
    tensors = [torch.randn(node.shape, dtype=torch.float64) for node in net.nodes]
    try:
        contraction = plan(net, output, strategy=strategy)
        result = contraction(*tensors)
    except ValueError as error:
        assert "does not apply" in str(error)
        return
    expected = torch.einsum(net.equation(output), *tensors)
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-10)


def test_plan_is_cached_by_shapes():
    net = tlora_network(2, 3, 10, 7, 2, 2, 2, 4, 3, "none", routed=True)
    contraction = plan(net, ("batch", "seq", "d_out"))
    config = {"order": 2, "d_in": 10, "d_out": 7, "n_terms": 2, "rank": 2, "batch": 2, "seq": 3,
              "normalize": "none", "routed": True}
    x, leaves_a, leaves_b, weights = _tlora_tensors(config)
    arguments = [*leaves_a.unbind(0), weights, *leaves_b.unbind(0), weights]
    contraction(x, *arguments)
    contraction(x, *arguments)
    assert len(contraction._cache) == 1
    contraction(x[:, :1], *arguments)
    assert len(contraction._cache) == 2


def test_report_at_t5_shapes_picks_factors():
    net = tlora_network(8, 256, 1024, 2816, 16, 8, 4, 6, 8, "pairwise", routed=True)
    report = plan(net, ("batch", "seq", "d_out")).report()
    assert report.strategy == "factors"
    assert report.flops == min(report.candidates.values())
    assert report.largest_intermediate > 0
    assert len(report.path) == 3  # A, B, then the input contraction
    assert "strategy factors" in report.describe()


def test_plan_rejects_bad_calls():
    net = tlora_network(1, 1, 4, 4, 1, 1, 1, 4, 4, "none", routed=False)
    with pytest.raises(ValueError, match=r"strategy must be 'auto' or one of .*got 'fastest'"):
        plan(net, strategy="fastest")
    contraction = plan(net, ("batch", "seq", "d_out"))
    with pytest.raises(TypeError, match=r"expected 3 tensors \['x', 'a_0', 'b_0'\], got 1"):
        contraction(torch.ones(1, 1, 4))
    with pytest.raises(ValueError, match=r"tensor 'x' must have 3 dimensions .* got shape \(1, 4\)"):
        contraction(torch.ones(1, 4), torch.ones(1, 1, 4), torch.ones(1, 1, 4))
    with pytest.raises(ValueError, match=r"index 'rank' has size 2 on 'b_0' but size 1 on tensor 'a_0'"):
        contraction(torch.ones(1, 1, 4), torch.ones(1, 1, 4), torch.ones(1, 2, 4))


class _FactorsOnly(AdapterLinear):
    """A layer that only implements factors(), as new adapter layers may."""

    routed = False

    def __init__(self, base):
        super().__init__(base, rank=2)
        self.a = nn.Parameter(torch.randn(1, base.in_features, 2, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(1, 2, base.out_features, dtype=torch.float64))

    def factors(self, task_ids=None):
        return self.a, self.b


@pytest.mark.parametrize("normalize", ["none", "pairwise"])
@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_tensorpoly_layer_planned_equals_factors_bmm(order, normalize):
    torch.manual_seed(order)
    layer = TensorPolyLinear(nn.Linear(11, 6).double(), rank=2, n_tasks=3, n_terms=2, order=order, normalize=normalize)
    with torch.no_grad():
        layer.leaves_b.normal_()
    x = torch.randn(3, 4, 11, dtype=torch.float64)
    task_ids = torch.tensor([2, 0, 2])
    planned = layer.update(x, task_ids)
    materialised = AdapterLinear.update(layer, x, task_ids)
    torch.testing.assert_close(planned, materialised, rtol=1e-10, atol=1e-10)
    with use_tasks(layer, task_ids):
        assert layer(x).shape == (3, 4, 6)


def test_lora_layer_planned_equals_factors_bmm():
    layer = LoRALinear(nn.Linear(9, 5).double(), rank=3)
    with torch.no_grad():
        layer.lora_b.normal_()
    x = torch.randn(2, 4, 9, dtype=torch.float64)
    torch.testing.assert_close(layer.update(x, None), AdapterLinear.update(layer, x, None))
    assert layer(x[:, 0]).shape == (2, 5)


def test_factors_only_layer_falls_back_to_bmm():
    layer = _FactorsOnly(nn.Linear(4, 3).double())
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    expected = layer.base_layer(x) + layer.scaling * (x @ layer.a[0] @ layer.b[0])
    torch.testing.assert_close(layer(x), expected)
