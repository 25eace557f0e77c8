"""The fused Kronecker update against factors materialised with kron_leaves and two bmm."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorpoly_tn.layers.fused import kronecker_update
from tensorpoly_tn.planner.adapters import tlora_nodes
from tensorpoly_tn.tlora import kron_leaves, leaf_length

SETTINGS = settings(max_examples=40, deadline=None)
N_TASKS = 4

configs = st.fixed_dictionaries({
    "order": st.integers(1, 8),
    "d_in": st.sampled_from([1, 3, 5, 10, 19]),
    "d_out": st.sampled_from([1, 2, 9, 15]),
    "n_terms": st.integers(1, 3),
    "rank": st.integers(1, 3),
    "batch": st.integers(1, 3),
    "seq": st.integers(1, 3),
    "normalize": st.sampled_from(["none", "pairwise"]),
    "mixing": st.sampled_from(["weights", "sum", "each", "per-order"]),
    "stacked": st.booleans(),
    "from_logits": st.booleans(),
})


def _tensors(config, seed=0):
    """Return x, the leaves of A and B, and the routing inputs the config's mixing needs, by name."""
    generator = torch.Generator().manual_seed(seed)
    order, rank, batch = config["order"], config["rank"], config["batch"]
    terms = batch if config["mixing"] == "each" else config["n_terms"]
    leaf_in, leaf_out = leaf_length(config["d_in"], order), leaf_length(config["d_out"], order)
    tensors = {
        "x": torch.randn(batch, config["seq"], config["d_in"], generator=generator, dtype=torch.float64),
        "leaves_a": torch.randn(order, terms, rank, leaf_in, generator=generator, dtype=torch.float64),
        "leaves_b": torch.randn(order, terms, rank, leaf_out, generator=generator, dtype=torch.float64),
    }
    splits = order if config["mixing"] == "per-order" else 1
    if config["mixing"] in ("weights", "per-order"):
        if config["from_logits"]:
            tensors["logits"] = torch.randn(N_TASKS, splits * terms, generator=generator, dtype=torch.float64)
        else:
            tensors["weights"] = torch.rand(batch, splits, terms, generator=generator, dtype=torch.float64)
    return tensors


def _routing_weights(config, tensors, task_ids):
    """The weights (batch, split, term): given, or the sigmoid of the logits' rows divided by their sum."""
    if "weights" in tensors:
        return tensors["weights"]
    rows = torch.sigmoid(tensors["logits"][task_ids])
    rows = rows.view(len(task_ids), -1, tensors["leaves_a"].shape[1])
    return rows / rows.sum(-1, keepdim=True)


def _reference(config, tensors, task_ids):
    """Materialise each factor with kron_leaves as the mixing mode defines it, then bmm."""
    x, leaves_a, leaves_b = tensors["x"], tensors["leaves_a"], tensors["leaves_b"]
    widths = (config["d_in"], config["d_out"])
    mixing = config["mixing"]
    if mixing == "per-order":
        weights = _routing_weights(config, tensors, task_ids)  # (batch, order, term)
        a, b = (kron_leaves(torch.einsum("bnk,nkrp->nbrp", weights, leaves), width, config["normalize"])
                for leaves, width in zip((leaves_a, leaves_b), widths))
    else:
        terms_a, terms_b = (kron_leaves(leaves, width, config["normalize"])
                            for leaves, width in zip((leaves_a, leaves_b), widths))  # (term, rank, d)
        if mixing == "weights":
            weights = _routing_weights(config, tensors, task_ids)[:, 0]  # (batch, term)
            a, b = torch.einsum("bt,tri->bri", weights, terms_a), torch.einsum("bt,tro->bro", weights, terms_b)
        elif mixing == "sum":
            a = terms_a.sum(0, keepdim=True).expand(x.shape[0], -1, -1)
            b = terms_b.sum(0, keepdim=True).expand(x.shape[0], -1, -1)
        else:
            a, b = terms_a, terms_b
    return torch.bmm(torch.bmm(x, a.transpose(1, 2)), b)


def _fused(config, tensors, task_ids):
    """Pass the leaves stacked with their normalisation, or the planner's nodes (tlora_nodes) as a list.

    tlora_nodes already applies the layer norms, so the list is multiplied without normalisation.
    Mixing "per-order" takes the leaves stacked only.
    """
    x, mixing = tensors["x"], config["mixing"]
    routing = {}
    if "logits" in tensors:
        routing = {"logits": tensors["logits"], "task_ids": task_ids}
    elif "weights" in tensors:
        routing = {"weights": tensors["weights"] if mixing == "per-order" else tensors["weights"][:, 0]}
    if config["stacked"] or mixing == "per-order":
        return kronecker_update(x, tensors["leaves_a"], tensors["leaves_b"], config["d_out"], mixing,
                                normalize=config["normalize"], **routing)
    nodes_a, nodes_b = (tlora_nodes(tensors[name], config["normalize"]) for name in ("leaves_a", "leaves_b"))
    return kronecker_update(x, nodes_a, nodes_b, config["d_out"], mixing, **routing)


def _gradients(result, tensors):
    weights = torch.linspace(-1.0, 2.0, result.numel(), dtype=result.dtype).reshape(result.shape)
    return torch.autograd.grad((result * weights).sum(), tensors)


@SETTINGS
@given(configs)
def test_fused_update_and_gradients_equal_materialised(config):
    tensors = {name: tensor.requires_grad_(True) for name, tensor in _tensors(config).items()}
    task_ids = torch.arange(config["batch"]) % N_TASKS
    task_ids[0] = N_TASKS - 1  # a task other than the row number
    expected = _reference(config, tensors, task_ids)
    result = _fused(config, tensors, task_ids)
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-10)
    inputs = list(tensors.values())
    for name, grad, grad_expected in zip(tensors, _gradients(result, inputs), _gradients(expected, inputs)):
        torch.testing.assert_close(grad, grad_expected, rtol=1e-9, atol=1e-9, msg=lambda message: f"{name}: {message}")


@pytest.mark.parametrize("stacked", [False, True])
@pytest.mark.parametrize("normalize", ["none", "pairwise"])
@pytest.mark.parametrize("mixing, from_logits", [("weights", False), ("weights", True), ("sum", False),
                                                 ("each", False), ("per-order", True)])
def test_fused_update_gradcheck(mixing, from_logits, normalize, stacked):
    config = {"order": 3, "d_in": 5, "d_out": 7, "n_terms": 2, "rank": 2, "batch": 2, "seq": 2,
              "normalize": normalize, "mixing": mixing, "stacked": stacked, "from_logits": from_logits}
    tensors = {name: tensor.requires_grad_(True) for name, tensor in _tensors(config).items()}
    task_ids = torch.tensor([3, 1])

    def function(*inputs):
        return _fused(config, dict(zip(tensors, inputs)), task_ids)

    assert torch.autograd.gradcheck(function, list(tensors.values()))


def test_input_without_grad_gets_none():
    config = {"order": 2, "d_in": 5, "d_out": 3, "n_terms": 2, "rank": 2, "batch": 2, "seq": 2,
              "normalize": "pairwise", "mixing": "weights", "stacked": True, "from_logits": False}
    tensors = _tensors(config)
    tensors["leaves_a"].requires_grad_(True)
    _fused(config, tensors, None).sum().backward()
    assert tensors["x"].grad is None
    assert tensors["leaves_a"].grad is not None


def test_bad_mixing_arguments_are_rejected():
    config = {"order": 2, "d_in": 4, "d_out": 4, "n_terms": 3, "rank": 1, "batch": 2, "seq": 1,
              "mixing": "weights", "from_logits": False}
    tensors = _tensors(config)
    x, weights = tensors["x"], tensors["weights"][:, 0]
    nodes_a, nodes_b = list(tensors["leaves_a"].unbind(0)), list(tensors["leaves_b"].unbind(0))
    with pytest.raises(ValueError, match=r"normalize must be one of \('none', 'pairwise'\), got 'layer'"):
        kronecker_update(x, nodes_a, nodes_b, 4, "weights", weights, "layer")
    with pytest.raises(ValueError, match=r"mixing must be one of \('weights', 'sum', 'each', 'per-order'\), got 'mean'"):
        kronecker_update(x, nodes_a, nodes_b, 4, "mean", weights)
    with pytest.raises(ValueError, match=r"got mixing 'sum', weights given, logits None"):
        kronecker_update(x, nodes_a, nodes_b, 4, "sum", weights)
    with pytest.raises(ValueError, match=r"got mixing 'weights', weights None, logits None"):
        kronecker_update(x, nodes_a, nodes_b, 4, "weights")
    with pytest.raises(ValueError, match=r"logits and task_ids must be given together"):
        kronecker_update(x, nodes_a, nodes_b, 4, "weights", logits=torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"mixing 'per-order' needs the leaves of each factor as one tensor"):
        kronecker_update(x, nodes_a, nodes_b, 4, "per-order", torch.ones(2, 2, 3))
    with pytest.raises(ValueError, match=r"mixing 'each' needs one term per example; got 3 terms for a batch of 2"):
        kronecker_update(x, nodes_a, nodes_b, 4, "each")
