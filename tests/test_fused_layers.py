"""Training-time forward and backward of the Kronecker-factor layers against their materialised factors."""

import pytest
import torch
from torch import nn

from tensorpoly_tn import TensorPoly2Linear, TensorPolyConfig, TensorPolyLinear, TLoRALinear, apply_adapters
from tensorpoly_tn.inject import adapter_layers

LAYERS = {
    "tlora": lambda base, order, normalize, fused: TLoRALinear(
        base, rank=3, n_terms=2, order=order, normalize=normalize, fused_training=fused),
    "tensorpoly-1": lambda base, order, normalize, fused: TensorPolyLinear(
        base, rank=3, n_tasks=4, n_terms=3, order=order, normalize=normalize, fused_training=fused),
    "tensorpoly-2": lambda base, order, normalize, fused: TensorPoly2Linear(
        base, rank=3, n_tasks=4, n_terms=3, order=order, normalize=normalize, fused_training=fused),
}
TASK_IDS = torch.tensor([2, 0, 2])  # a repeated task, as in a mixed batch


def _layer(method, order, normalize, dtype=torch.float64, fused=True):
    torch.manual_seed(order)
    layer = LAYERS[method](nn.Linear(11, 7).to(dtype), order, normalize, fused)
    with torch.no_grad():
        for name, parameter in layer.named_parameters():
            if parameter.requires_grad:
                parameter.normal_()  # B's last leaf starts at zero; make every gradient non-trivial
    layer.task_ids = TASK_IDS
    return layer


def _reference(layer, x):
    """base(x) + scaling * x A B with A and B from factors(), which materialises them with kron_leaves."""
    a, b = layer.factors(TASK_IDS if layer.routed else None)
    a, b = a.expand(x.shape[0], -1, -1), b.expand(x.shape[0], -1, -1)
    return layer.base_layer(x) + layer.scaling * torch.bmm(torch.bmm(x, a), b)


def _trainable(layer):
    return [parameter for parameter in layer.parameters() if parameter.requires_grad]


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("normalize", ["none", "pairwise"])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("method", list(LAYERS))
def test_training_forward_and_gradients_equal_factors(method, order, normalize, fused):
    layer = _layer(method, order, normalize, fused=fused)
    x = torch.randn(3, 5, 11, dtype=torch.float64, requires_grad=True)
    tensors = [x, *_trainable(layer)]
    result = layer(x)
    assert (type(result.grad_fn.next_functions[1][0]).__name__ == "KroneckerUpdateBackward") == fused
    expected = _reference(layer, x)
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-10)
    weights = torch.linspace(-1.0, 1.0, result.numel(), dtype=result.dtype).reshape(result.shape)
    grads = torch.autograd.grad((result * weights).sum(), tensors)
    grads_expected = torch.autograd.grad((expected * weights).sum(), tensors)
    for grad, grad_expected in zip(grads, grads_expected):
        torch.testing.assert_close(grad, grad_expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("method", list(LAYERS))
def test_no_grad_output_equals_training_output(method):
    layer = _layer(method, 4, "pairwise")
    x = torch.randn(3, 5, 11, dtype=torch.float64)
    with torch.no_grad():
        planned = layer(x)
    trained = layer(x.requires_grad_(True))
    torch.testing.assert_close(trained, planned, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("method", list(LAYERS))
def test_half_precision_training_step_keeps_dtypes(method, dtype):
    layer = _layer(method, 4, "pairwise", dtype=dtype)
    x = torch.randn(3, 5, 11, dtype=dtype, requires_grad=True)
    result = layer(x)
    assert result.dtype == dtype
    result.float().square().mean().backward()
    for name, parameter in layer.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, name
            assert parameter.grad.dtype == parameter.dtype, name
            assert torch.isfinite(parameter.grad).all(), name


@pytest.mark.parametrize("method", list(LAYERS))
def test_config_turns_fused_training_off(method):
    model = nn.Sequential(nn.Linear(8, 8))
    apply_adapters(model, TensorPolyConfig(method=method, rank=2, n_tasks=2, n_terms=2, fused_training=False,
                                           target_modules=("0",)))
    layer = adapter_layers(model)["0"]
    assert layer.fused_training is False
