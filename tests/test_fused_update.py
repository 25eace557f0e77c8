"""The fused Kronecker update against factors materialised with kron_leaves and two bmm."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorpoly_tn.layers.fused import kronecker_update
from tensorpoly_tn.planner.adapters import tlora_nodes
from tensorpoly_tn.tlora import kron_leaves, leaf_length

SETTINGS = settings(max_examples=25, deadline=None)

configs = st.fixed_dictionaries({
    "order": st.integers(1, 8),
    "d_in": st.sampled_from([1, 3, 5, 10, 19]),
    "d_out": st.sampled_from([1, 2, 9, 15]),
    "n_terms": st.integers(1, 3),
    "rank": st.integers(1, 3),
    "batch": st.integers(1, 3),
    "seq": st.integers(1, 3),
    "normalize": st.sampled_from(["none", "pairwise"]),
    "mixing": st.sampled_from(["weights", "sum", "each"]),
    "stacked": st.booleans(),
})


def _tensors(config, seed=0):
    generator = torch.Generator().manual_seed(seed)
    order, rank = config["order"], config["rank"]
    terms = config["batch"] if config["mixing"] == "each" else config["n_terms"]
    leaf_in, leaf_out = leaf_length(config["d_in"], order), leaf_length(config["d_out"], order)
    x = torch.randn(config["batch"], config["seq"], config["d_in"], generator=generator, dtype=torch.float64)
    leaves_a = torch.randn(order, terms, rank, leaf_in, generator=generator, dtype=torch.float64)
    leaves_b = torch.randn(order, terms, rank, leaf_out, generator=generator, dtype=torch.float64)
    weights = None
    if config["mixing"] == "weights":
        weights = torch.rand(config["batch"], terms, generator=generator, dtype=torch.float64)
    return x, leaves_a, leaves_b, weights


def _reference(config, x, leaves_a, leaves_b, weights):
    """Materialise F per term with kron_leaves, mix it by the config's mixing mode, then bmm."""
    terms_a = kron_leaves(leaves_a, config["d_in"], config["normalize"])  # (term, rank, d_in)
    terms_b = kron_leaves(leaves_b, config["d_out"], config["normalize"])  # (term, rank, d_out)
    if config["mixing"] == "weights":
        a, b = torch.einsum("bt,tri->bri", weights, terms_a), torch.einsum("bt,tro->bro", weights, terms_b)
    elif config["mixing"] == "sum":
        a = terms_a.sum(0, keepdim=True).expand(x.shape[0], -1, -1)
        b = terms_b.sum(0, keepdim=True).expand(x.shape[0], -1, -1)
    else:
        a, b = terms_a, terms_b
    return torch.bmm(torch.bmm(x, a.transpose(1, 2)), b)


def _fused(config, x, leaves_a, leaves_b, weights):
    """Pass the leaves stacked with their normalisation, or the planner's nodes (tlora_nodes) as a list.

    tlora_nodes already applies the layer norms, so the list is multiplied without normalisation.
    """
    if config.get("stacked"):
        return kronecker_update(x, leaves_a, leaves_b, config["d_out"], config["mixing"], weights, config["normalize"])
    nodes_a, nodes_b = tlora_nodes(leaves_a, config["normalize"]), tlora_nodes(leaves_b, config["normalize"])
    return kronecker_update(x, nodes_a, nodes_b, config["d_out"], config["mixing"], weights)


def _gradients(result, tensors):
    weights = torch.linspace(-1.0, 2.0, result.numel(), dtype=result.dtype).reshape(result.shape)
    return torch.autograd.grad((result * weights).sum(), tensors)


@SETTINGS
@given(configs)
def test_fused_update_and_gradients_equal_materialised(config):
    tensors = [tensor.requires_grad_(True) for tensor in _tensors(config) if tensor is not None]
    weights = tensors[3] if config["mixing"] == "weights" else None
    expected = _reference(config, *tensors[:3], weights)
    result = _fused(config, *tensors[:3], weights)
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-10)
    for grad, grad_expected in zip(_gradients(result, tensors), _gradients(expected, tensors)):
        torch.testing.assert_close(grad, grad_expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("stacked", [False, True])
@pytest.mark.parametrize("normalize", ["none", "pairwise"])
@pytest.mark.parametrize("mixing", ["weights", "sum", "each"])
def test_fused_update_gradcheck(mixing, normalize, stacked):
    config = {"order": 3, "d_in": 5, "d_out": 7, "n_terms": 2, "rank": 2, "batch": 2, "seq": 2,
              "normalize": normalize, "mixing": mixing, "stacked": stacked}
    tensors = [tensor.requires_grad_(True) for tensor in _tensors(config) if tensor is not None]

    def function(x, leaves_a, leaves_b, *weights):
        return _fused(config, x, leaves_a, leaves_b, weights[0] if weights else None)

    assert torch.autograd.gradcheck(function, tensors)


def test_input_without_grad_gets_none():
    config = {"order": 2, "d_in": 5, "d_out": 3, "n_terms": 2, "rank": 2, "batch": 2, "seq": 2,
              "normalize": "pairwise", "mixing": "weights"}
    x, leaves_a, leaves_b, weights = _tensors(config)
    leaves_a.requires_grad_(True)
    _fused(config, x, leaves_a, leaves_b, weights).sum().backward()
    assert x.grad is None
    assert leaves_a.grad is not None


def test_bad_mixing_arguments_are_rejected():
    x, leaves_a, leaves_b, weights = _tensors({"order": 2, "d_in": 4, "d_out": 4, "n_terms": 3, "rank": 1,
                                               "batch": 2, "seq": 1, "mixing": "weights"})
    nodes_a, nodes_b = list(leaves_a.unbind(0)), list(leaves_b.unbind(0))
    with pytest.raises(ValueError, match=r"normalize must be one of \('none', 'pairwise'\), got 'layer'"):
        kronecker_update(x, nodes_a, nodes_b, 4, "weights", weights, "layer")
    with pytest.raises(ValueError, match=r"mixing must be one of \('weights', 'sum', 'each'\), got 'mean'"):
        kronecker_update(x, nodes_a, nodes_b, 4, "mean", weights)
    with pytest.raises(ValueError, match=r"routing weights must be given for mixing 'weights' and omitted otherwise; got mixing 'sum' with weights"):
        kronecker_update(x, nodes_a, nodes_b, 4, "sum", weights)
    with pytest.raises(ValueError, match=r"mixing 'each' needs one term per example; got 3 terms for a batch of 2"):
        kronecker_update(x, nodes_a, nodes_b, 4, "each")
