"""Planned gradients against autograd through torch.einsum on the whole network."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from network_strategies import random_networks

from tensorpoly_tn.planner import STRATEGIES, plan
from tensorpoly_tn.planner.adapters import tlora_network
from tensorpoly_tn.planner.reverse import step_gradients

SETTINGS = settings(max_examples=25, deadline=None)


def _gradients(result, tensors):
    weights = torch.linspace(-1.0, 2.0, result.numel(), dtype=result.dtype).reshape(result.shape)
    return torch.autograd.grad((result * weights).sum(), tensors)


@SETTINGS
@given(random_networks(hyperedges=True), st.sampled_from(("auto",) + STRATEGIES), st.data())
def test_random_network_gradients_equal_einsum(case, strategy, data):
    net, output = case
    tensors = [torch.randn(node.shape, dtype=torch.float64) for node in net.nodes]
    # Some inputs need no gradient, as a frozen input or the first layer's hidden states.
    needs = data.draw(st.lists(st.booleans(), min_size=len(tensors), max_size=len(tensors)).filter(any))
    tensors = [tensor.requires_grad_(need) for tensor, need in zip(tensors, needs)]
    needing_grad = [tensor for tensor in tensors if tensor.requires_grad]
    try:
        contraction = plan(net, output, strategy=strategy)
        result = contraction(*tensors)
    except ValueError as error:
        assert "does not apply" in str(error)
        return
    expected = torch.einsum(net.equation(output), *tensors)
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-10)
    for grad, grad_expected in zip(_gradients(result, needing_grad), _gradients(expected, needing_grad)):
        torch.testing.assert_close(grad, grad_expected, rtol=1e-10, atol=1e-10)


def _routed_tlora_case():
    """A TensorPoly-I network with fused widths cut from padded leaves (d_in 10 of 4 x 3)."""
    net = tlora_network(2, 3, 10, 7, 2, 2, 2, 4, 3, "none", routed=True)
    generator = torch.Generator().manual_seed(1)
    tensors = [torch.randn(node.shape, dtype=torch.float64, generator=generator) for node in net.nodes]
    return net, tensors


def test_planned_call_is_one_autograd_node():
    net, tensors = _routed_tlora_case()
    tensors[0].requires_grad_(True)
    result = plan(net, ("batch", "seq", "d_out"))(*tensors)
    assert type(result.grad_fn).__name__ == "PlannedContractionBackward"
    unplanned = plan(net, ("batch", "seq", "d_out"), backward="autograd")(*tensors)
    assert type(unplanned.grad_fn).__name__ != "PlannedContractionBackward"


def test_planned_and_autograd_modes_agree():
    net, tensors = _routed_tlora_case()
    tensors = [tensor.requires_grad_(True) for tensor in tensors]
    planned = plan(net, ("batch", "seq", "d_out"))(*tensors)
    recorded = plan(net, ("batch", "seq", "d_out"), backward="autograd")(*tensors)
    torch.testing.assert_close(planned, recorded, rtol=0, atol=0)
    for grad, grad_recorded in zip(_gradients(planned, tensors), _gradients(recorded, tensors)):
        torch.testing.assert_close(grad, grad_recorded, rtol=1e-12, atol=1e-12)


def test_planned_gradcheck_with_retained_graph():
    """gradcheck runs backward several times on one graph, so the tape must survive a backward pass."""
    net, tensors = _routed_tlora_case()
    tensors = [tensor.requires_grad_(True) for tensor in tensors]
    contraction = plan(net, ("batch", "seq", "d_out"))
    assert torch.autograd.gradcheck(contraction, tensors)


def test_no_grad_call_builds_no_graph():
    net, tensors = _routed_tlora_case()
    tensors[1].requires_grad_(True)
    with torch.no_grad():
        result = plan(net, ("batch", "seq", "d_out"))(*tensors)
    assert result.grad_fn is None


def test_sum_alone_letter_gradient_is_broadcast():
    """d/dL of sum_j L[i, j] R[i] is R[i] for every j: the summed-alone letter j is broadcast back."""
    gradients = step_gradients("ij,i->i", {"i": 2, "j": 3})
    left, right = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), torch.tensor([10.0, 20.0])
    grad_output = torch.tensor([1.0, -1.0])
    torch.testing.assert_close(gradients[0](grad_output, [left, right]), torch.tensor([[10.0] * 3, [-20.0] * 3]))
    torch.testing.assert_close(gradients[1](grad_output, [left, right]), torch.tensor([6.0, -15.0]))


def test_one_operand_gradient_is_permuted_back():
    """d/dT of sum_k T[i, k, j] laid out (j, i) is the output gradient transposed, repeated along k."""
    (gradient,) = step_gradients("ikj->ji", {"i": 2, "j": 3, "k": 2})
    grad_output = torch.arange(6.0).reshape(3, 2)
    expected = grad_output.T.unsqueeze(1).expand(2, 2, 3)
    torch.testing.assert_close(gradient(grad_output, [None]), expected)


@pytest.mark.parametrize("equation", ["ii,i->i", "ij,jk,kl->il", "ij->ii"])
def test_unsupported_steps_have_no_planned_gradient(equation):
    assert step_gradients(equation, {"i": 2, "j": 2, "k": 2, "l": 2}) is None


def test_plan_rejects_unknown_backward():
    net, _ = _routed_tlora_case()
    with pytest.raises(ValueError, match=r"backward must be one of \('planned', 'autograd'\), got 'manual'"):
        plan(net, backward="manual")


def test_autocast_call_uses_autograd():
    """Under autocast the steps run in bfloat16, so the call is recorded by autograd and its gradients are bfloat16-cast."""
    net, tensors = _routed_tlora_case()
    tensors = [tensor.float().requires_grad_(True) for tensor in tensors]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = plan(net, ("batch", "seq", "d_out"))(*tensors)
    assert type(result.grad_fn).__name__ != "PlannedContractionBackward"
    grads = _gradients(result.float(), tensors)
    assert all(grad.dtype == torch.float32 for grad in grads)
