"""TensorPolyLinear factors against a NumPy materialisation with numpy.kron."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from reference import numpy_factor, numpy_tree_kron
from tensorpoly_tn import TensorPolyLinear, use_tasks
from tensorpoly_tn.tlora import kron_leaves, leaf_length

CASES = [
    # (order, d_in, d_out, n_terms, rank)
    (1, 7, 5, 1, 1),
    (2, 10, 13, 3, 2),
    (3, 20, 9, 2, 3),
    (4, 17, 30, 1, 2),
    (5, 33, 40, 2, 1),
    (6, 65, 70, 3, 2),
]


def _layer(order, d_in, d_out, n_terms, rank, normalize, n_tasks=3, seed=0):
    torch.manual_seed(seed)
    base = nn.Linear(d_in, d_out).double()
    layer = TensorPolyLinear(base, rank=rank, n_tasks=n_tasks, n_terms=n_terms, order=order, normalize=normalize)
    with torch.no_grad():
        layer.leaves_b.normal_()  # make B non-zero so that the comparison means something
        layer.router.logits.normal_()
    return layer


def _weights(layer, task):
    logits = layer.router.logits.detach().numpy()[task]
    sigmoid = 1.0 / (1.0 + np.exp(-logits))
    return sigmoid / sigmoid.sum()


@pytest.mark.parametrize("normalize", ["none", "pairwise"])
@pytest.mark.parametrize("order, d_in, d_out, n_terms, rank", CASES)
def test_factors_match_numpy_kron(order, d_in, d_out, n_terms, rank, normalize):
    layer = _layer(order, d_in, d_out, n_terms, rank, normalize)
    pairwise = normalize == "pairwise"
    task_ids = torch.tensor([2, 0, 1])
    a, b = layer.factors(task_ids)
    for row, task in enumerate(task_ids.tolist()):
        weights = _weights(layer, task)
        expected_a = numpy_factor(layer.leaves_a.detach().numpy(), weights, d_in, pairwise)
        expected_b = numpy_factor(layer.leaves_b.detach().numpy(), weights, d_out, pairwise).T
        np.testing.assert_allclose(a[row].detach().numpy(), expected_a, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b[row].detach().numpy(), expected_b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("normalize", ["none", "pairwise"])
def test_forward_equals_materialised_update(normalize):
    layer = _layer(3, 20, 9, 2, 3, normalize)
    x = torch.randn(2, 4, 20, dtype=torch.float64)
    task_ids = [1, 2]
    with use_tasks(layer, task_ids):
        output = layer(x)
    for row, task in enumerate(task_ids):
        weights = _weights(layer, task)
        a = numpy_factor(layer.leaves_a.detach().numpy(), weights, 20, normalize == "pairwise")
        b = numpy_factor(layer.leaves_b.detach().numpy(), weights, 9, normalize == "pairwise").T
        weight = layer.base_layer.weight.detach().numpy()
        bias = layer.base_layer.bias.detach().numpy()
        inputs = x[row].numpy()
        expected = inputs @ weight.T + bias + (inputs @ a @ b) / layer.rank
        np.testing.assert_allclose(output[row].detach().numpy(), expected, rtol=1e-10, atol=1e-12)


def test_kron_leaves_none_equals_sequential_kron():
    rng = np.random.default_rng(0)
    leaves = [rng.normal(size=3) for _ in range(4)]
    expected = leaves[0]
    for leaf in leaves[1:]:
        expected = np.kron(expected, leaf)
    result = kron_leaves(torch.tensor(np.stack(leaves)), width=80, normalize="none")
    np.testing.assert_allclose(result.numpy(), expected[:80], rtol=1e-12)


def test_pairwise_order_four_by_hand():
    # Order 4 with pairwise norm: kron(LN(l0 x l1), LN(l2 x l3)); the final product is not normalised.
    l0, l1, l2, l3 = (np.array(v, dtype=float) for v in ([1, 2], [0, 1], [3, -1], [2, 2]))

    def norm(v):
        return (v - v.mean()) / np.sqrt(v.var() + 1e-5)

    expected = np.kron(norm(np.kron(l0, l1)), norm(np.kron(l2, l3)))
    np.testing.assert_allclose(numpy_tree_kron([l0, l1, l2, l3], True), expected)
    result = kron_leaves(torch.tensor(np.stack([l0, l1, l2, l3])), width=16, normalize="pairwise")
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-10)


@pytest.mark.parametrize("width, order, expected", [(64, 3, 4), (65, 3, 5), (1024, 2, 32), (1025, 2, 33), (2816, 4, 8), (7, 1, 7), (1, 5, 1), (1000, 3, 10)])
def test_leaf_length_is_integer_ceiling_root(width, order, expected):
    assert leaf_length(width, order) == expected


def test_leaf_length_exhaustive_small():
    for width, order in itertools.product(range(1, 300), range(1, 7)):
        length = leaf_length(width, order)
        assert length**order >= width
        assert length == 1 or (length - 1) ** order < width


def test_leaf_shapes_follow_widths():
    layer = _layer(3, 20, 9, 2, 3, "none")
    assert tuple(layer.leaves_a.shape) == (3, 2, 3, 3)  # ceil(20 ** (1/3)) = 3
    assert tuple(layer.leaves_b.shape) == (3, 2, 3, 3)  # ceil(9 ** (1/3)) = 3


@pytest.mark.parametrize("normalize", ["none", "pairwise"])
@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_unrouted_tlora_forward_matches_numpy(order, normalize):
    from tensorpoly_tn.layers import TLoRALinear

    torch.manual_seed(4)
    layer = TLoRALinear(nn.Linear(19, 11).double(), rank=2, n_terms=3, order=order, normalize=normalize)
    with torch.no_grad():
        layer.leaves_b.normal_()
    x = torch.randn(2, 3, 19, dtype=torch.float64)
    ones = np.ones(3)  # TLoRA sums its terms with weight one
    a = numpy_factor(layer.leaves_a.detach().numpy(), ones, 19, normalize == "pairwise")
    b = numpy_factor(layer.leaves_b.detach().numpy(), ones, 11, normalize == "pairwise").T
    weight = layer.base_layer.weight.detach().numpy()
    bias = layer.base_layer.bias.detach().numpy()
    expected = x.numpy() @ weight.T + bias + (x.numpy() @ a @ b) / layer.rank
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-10, atol=1e-12)
