"""Adapters written on the planner in a few lines each, checked against their materialised weight.

Each adapter is a TensorNetwork from the input ``x`` (batch, d_in) to (batch, d_out); the
reference builds the dense weight (d_in, d_out) with tensorly and multiplies.
"""

import pytest
import tensorly as tl
import torch
from tensorly.tenalg import kronecker

from tensorpoly_tn.network import TensorNetwork
from tensorpoly_tn.planner import plan

torch.manual_seed(0)
BATCH, D_IN, D_OUT, RANK = 3, 12, 10, 2
X = torch.randn(BATCH, D_IN, dtype=torch.float64)


def _random(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def _lora():
    a, b = _random(D_IN, RANK), _random(RANK, D_OUT)
    net = TensorNetwork().add("x", ("batch", "d_in"), X.shape, role="input")
    net.add("A", ("d_in", "rank"), a.shape).add("B", ("rank", "d_out"), b.shape)
    return net, [a, b], a @ b


def _lokr():
    # W = C (4, 5) kron D (3, 2): d_in = 4 * 3, d_out = 5 * 2.
    c, d = _random(4, 5), _random(3, 2)
    net = TensorNetwork().add("x", ("batch", "d_in"), X.shape, role="input")
    net.add("C", ("in_0", "out_0"), c.shape).add("D", ("in_1", "out_1"), d.shape)
    net.fuse("d_in", ("in_0", "in_1"), D_IN).fuse("d_out", ("out_0", "out_1"), D_OUT)
    with tl.backend_context("pytorch"):
        weight = kronecker([c, d])
    return net, [c, d], weight


def _tensor_train():
    # W[(i0, i1), (o0, o1)] = G1[i0, o0, r] G2[r, i1, o1], a two-core tensor train over paired legs.
    g1, g2 = _random(4, 5, RANK), _random(RANK, 3, 2)
    net = TensorNetwork().add("x", ("batch", "d_in"), X.shape, role="input")
    net.add("G1", ("in_0", "out_0", "rank"), g1.shape).add("G2", ("rank", "in_1", "out_1"), g2.shape)
    net.fuse("d_in", ("in_0", "in_1"), D_IN).fuse("d_out", ("out_0", "out_1"), D_OUT)
    with tl.backend_context("pytorch"):
        full = tl.tt_to_tensor([g1.reshape(1, 20, RANK), g2.reshape(RANK, 6, 1)])  # (i0 o0, i1 o1)
    weight = full.reshape(4, 5, 3, 2).permute(0, 2, 1, 3).reshape(D_IN, D_OUT)
    return net, [g1, g2], weight


def _cp():
    # W = sum_r lambda_r u_r v_r^T as a CP tensor of order 2.
    weights, u, v = _random(RANK), _random(D_IN, RANK), _random(D_OUT, RANK)
    net = TensorNetwork(hyper_indices=("rank",)).add("x", ("batch", "d_in"), X.shape, role="input")
    net.add("lambda", ("rank",), weights.shape).add("U", ("d_in", "rank"), u.shape).add("V", ("d_out", "rank"), v.shape)
    with tl.backend_context("pytorch"):
        weight = tl.cp_to_tensor((weights, [u, v]))
    return net, [weights, u, v], weight


def _tucker():
    # W = U core V^T with a (3, 2) core.
    core, u, v = _random(3, 2), _random(D_IN, 3), _random(D_OUT, 2)
    net = TensorNetwork().add("x", ("batch", "d_in"), X.shape, role="input")
    net.add("core", ("rank_in", "rank_out"), core.shape)
    net.add("U", ("d_in", "rank_in"), u.shape).add("V", ("d_out", "rank_out"), v.shape)
    with tl.backend_context("pytorch"):
        weight = tl.tucker_to_tensor((core, [u, v]))
    return net, [core, u, v], weight


@pytest.mark.parametrize("strategy", ["auto", "dense", "direct"])
@pytest.mark.parametrize("build", [_lora, _lokr, _tensor_train, _cp, _tucker])
def test_adapter_equals_materialised_weight(build, strategy):
    net, parameters, weight = build()
    contraction = plan(net, ("batch", "d_out"), strategy=strategy)
    torch.testing.assert_close(contraction(X, *parameters), X @ weight, rtol=1e-10, atol=1e-10)


def test_tensorly_backend_is_left_alone():
    _lokr()
    assert tl.get_backend() == "numpy"
