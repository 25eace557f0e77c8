# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. Routing granularity
#
# **Question.** LoRA, Poly, MHR, TensorPoly-I and TensorPoly-II differ in what a task's router weights:
# nothing, whole LoRA modules, slices of them, tensor-product terms, or the leaves of each order. What
# does each router weight, where does it sit in the tensor network, and how many routing parameters
# does each need?
#
# Steps:
# 1. One layer of each method on the same frozen linear.
# 2. Each method's update written as a tensor network, drawn with the routing weights in green, and
#    checked against the layer.
# 3. Routing parameters per layer and on T5-large.

# %%
# %matplotlib inline
import random
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch

import tensorpoly_tn as tp
from tensorpoly_tn.accounting import build_meta_model
from tensorpoly_tn.inject import build_layer
from tensorpoly_tn.network import TensorNetwork
from tensorpoly_tn.planner import plan
from tensorpoly_tn.planner.adapters import lora_network, tlora_network, tlora_nodes

# tqdm.auto (imported by transformers) warns when ipywidgets is missing; the notebook shows no bars.
warnings.filterwarnings("ignore", message="IProgress not found")
random.seed(0)
np.random.seed(0)
torch.manual_seed(0)

OUTPUT = ("batch", "seq", "d_out")

# %% [markdown]
# ## 1. One layer of each method
#
# The same frozen 24 -> 16 linear, 3 tasks, rank 2. Poly and MHR mix S = 4 LoRA modules (skills); MHR
# cuts each into H = 2 heads. TensorPoly-I and -II use K = 4 terms of order N = 2, without the layer norm
# (`normalize="none"`) so that each update is a pure tensor network.

# %%
D_IN, D_OUT, N_TASKS, RANK = 24, 16, 3, 2
base = torch.nn.Linear(D_IN, D_OUT, dtype=torch.float64)
shared = {"rank": RANK, "n_tasks": N_TASKS, "target_modules": (".*",)}
configs = {
    "LoRA": tp.TensorPolyConfig(method="lora", **shared),
    "Poly": tp.TensorPolyConfig(method="poly", n_skills=4, **shared),
    "MHR": tp.TensorPolyConfig(method="mhr", n_skills=4, n_splits=2, **shared),
    "TensorPoly-I": tp.TensorPolyConfig(method="tensorpoly-1", n_terms=4, order=2, normalize="none", **shared),
    "TensorPoly-II": tp.TensorPolyConfig(method="tensorpoly-2", n_terms=4, order=2, normalize="none", **shared),
}
layers = {name: build_layer(base, config).double() for name, config in configs.items()}
with torch.no_grad():  # B starts at zero in every method; give it values so the checks mean something
    for layer in layers.values():
        for name, parameter in layer.named_parameters():
            if "router" not in name:
                parameter.normal_()
            else:
                parameter.uniform_(-2, 2)  # routing weights far from uniform

print(f"{'method':>13} {'router logits':>14} {'router parameters':>18} {'other trainable':>16}")
for name, layer in layers.items():
    router = getattr(layer, "router", None)
    shape = "-" if router is None else str(tuple(router.logits.shape))
    routing = 0 if router is None else router.logits.numel()
    other = sum(p.numel() for n, p in layer.named_parameters() if p.requires_grad and "router" not in n)
    print(f"{name:>13} {shape:>14} {routing:>18} {other:>16}")

# %% [markdown]
# What one router row (one task) weights:
#
# | method | router row | what a weight scales |
# |---|---|---|
# | LoRA | none | one A, B shared by every task |
# | Poly | S | a whole LoRA module $(A_m, B_m)$: $A_t = \sum_m w_{tm} A_m$ |
# | MHR | H x S | head h of module m: rows $h d_\mathrm{in}/H$ to $(h+1) d_\mathrm{in}/H$ of $A_m$ (and columns of $B_m$) |
# | TensorPoly-I | K | a tensor-product term: $A_t = \sum_k w_{tk}\, a^{(1)}_k \otimes \dots \otimes a^{(N)}_k$ |
# | TensorPoly-II | N x K | the leaves of one order: $A_t = \bigotimes_n \big(\sum_k w^{(n)}_{tk} a^{(n)}_k\big)$ |

# %%
expected_rows = {"Poly": 4, "MHR": 2 * 4, "TensorPoly-I": 4, "TensorPoly-II": 2 * 4}
for name, width in expected_rows.items():
    assert tuple(layers[name].router.logits.shape) == (N_TASKS, width), name
assert not hasattr(layers["LoRA"], "router")

# %% [markdown]
# ## 2. The networks, with the routers on them
#
# Each update `x A_t B_t` is a network. The routing weights of a task are a node with a `batch` leg
# (one row per example) joined to what they mix. Because A and B each take their own sum over the
# experts, the weights appear twice, once per factor (`w_a`, `w_b`).
#
# MHR's heads are a leg of A that is fused with the head's rows into `d_in`, so the router's split leg
# is joined to the input, and TensorPoly-II has one weight node per order, each joined to one leaf.

# %%
def poly_network(batch, seq, n_splits, n_skills):
    """Poly (n_splits = 1) and MHR: skill-mixed LoRA modules, cut into n_splits heads."""
    # The head leg joins the input (through the fused d_in), the weights and the module: a hyperedge.
    net = TensorNetwork(hyper_indices=("batch", "rank", "split_a", "split_b"))
    net.add("x", ("batch", "seq", "d_in"), (batch, seq, D_IN), role="input")
    net.add("w_a", ("batch", "split_a", "skill_a"), (batch, n_splits, n_skills), role="routing", group="A")
    net.add("A", ("split_a", "skill_a", "split_in", "rank"), (n_splits, n_skills, D_IN // n_splits, RANK), group="A")
    net.add("w_b", ("batch", "split_b", "skill_b"), (batch, n_splits, n_skills), role="routing", group="B")
    net.add("B", ("split_b", "skill_b", "rank", "split_out"), (n_splits, n_skills, RANK, D_OUT // n_splits), group="B")
    return net.fuse("d_in", ("split_a", "split_in"), D_IN).fuse("d_out", ("split_b", "split_out"), D_OUT)


def tensorpoly2_network(batch, seq, order, n_terms, leaf_in, leaf_out):
    """TensorPoly-II: for each order n, leaf a_n mixed by its own weights w_a{n}, then multiplied."""
    net = TensorNetwork(hyper_indices=("batch", "rank"))
    net.add("x", ("batch", "seq", "d_in"), (batch, seq, D_IN), role="input")
    for side, leaf, width in (("a", leaf_in, "d_in"), ("b", leaf_out, "d_out")):
        for n in range(order):
            net.add(f"w_{side}{n}", ("batch", f"term_{side}{n}"), (batch, n_terms), role="routing", group=side.upper())
            net.add(f"{side}_{n}", (f"term_{side}{n}", "rank", f"{width}_{n}"), (n_terms, RANK, leaf), group=side.upper())
        net.fuse(width, [f"{width}_{n}" for n in range(order)], D_IN if side == "a" else D_OUT)
    return net


tp1, tp2 = layers["TensorPoly-I"], layers["TensorPoly-II"]
networks = {
    "LoRA": lora_network(2, 5, D_IN, D_OUT, RANK),
    "Poly": poly_network(2, 5, 1, 4),
    "MHR": poly_network(2, 5, 2, 4),
    "TensorPoly-I": tlora_network(2, 5, D_IN, D_OUT, RANK, 4, 2, tp1.leaf_in, tp1.leaf_out, "none", routed=True),
    "TensorPoly-II": tensorpoly2_network(2, 5, 2, 4, tp2.leaf_in, tp2.leaf_out),
}
fig, axes = plt.subplots(2, 3, figsize=(15, 10))
for ax, (name, network) in zip(axes.flat, networks.items()):
    network.draw(output=OUTPUT, ax=ax)
    routing = sum(node.role == "routing" for node in network.nodes)
    ax.set_title(f"{name}: {routing} routing node(s)")
axes.flat[-1].axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# Each drawn network, planned and contracted, gives the layer's own update for a batch of two examples
# of different tasks. The weights come from the layer's router, in its (batch, split, expert) layout.

# %% tags=["nbval-ignore-output"]
# The printed differences are float64 rounding errors whose last digit depends on the BLAS build.
x = torch.randn(2, 5, D_IN, dtype=torch.float64)  # (batch, seq, d_in)
task_ids = torch.tensor([0, 2])


def network_operands(name, layer):
    """The tensors of ``networks[name]``, in node order, taken from ``layer``."""
    if name == "LoRA":
        a, b = layer.factors(None)  # (1, d_in, rank), (1, rank, d_out)
        return [a[0], b[0]]
    weights = layer.router.weights(task_ids)  # (batch, split, expert)
    if name in ("Poly", "MHR"):
        return [weights, layer.poly_lora_a, weights, layer.poly_lora_b]
    if name == "TensorPoly-I":
        return [*tlora_nodes(layer.leaves_a, "none"), weights[:, 0], *tlora_nodes(layer.leaves_b, "none"), weights[:, 0]]
    order = layer.order
    side_a = [tensor for n in range(order) for tensor in (weights[:, n], layer.leaves_a[n])]
    side_b = [tensor for n in range(order) for tensor in (weights[:, n], layer.leaves_b[n])]
    return side_a + side_b


with torch.no_grad():
    for name, network in networks.items():
        layer = layers[name]
        through_network = plan(network, OUTPUT)(x, *network_operands(name, layer))
        by_layer = layer.update(x, None if name == "LoRA" else task_ids)
        print(f"{name:>13}: max |network - layer| = {(through_network - by_layer).abs().max():.0e}")
        assert torch.allclose(through_network, by_layer, rtol=1e-9, atol=1e-9), name

# %% [markdown]
# The methods form a family. With every routing weight equal (the `uniform` selector), TensorPoly-I is
# TLoRA with its terms averaged, and Poly with one skill is LoRA. Both checked on the layers:

# %%
tlora = build_layer(base, tp.TensorPolyConfig(method="tlora", rank=RANK, n_terms=4, order=2, normalize="none")).double()
uniform_tp1 = build_layer(base, tp.TensorPolyConfig(method="tensorpoly-1", n_tasks=N_TASKS, rank=RANK, n_terms=4, order=2,
                                                    normalize="none", selector="uniform")).double()
with torch.no_grad():
    uniform_tp1.leaves_a.copy_(tlora.leaves_a)
    uniform_tp1.leaves_b.normal_()
    tlora.leaves_b.copy_(uniform_tp1.leaves_b)
    a_tp1, b_tp1 = uniform_tp1.factors(task_ids)
    a_tlora, b_tlora = tlora.factors()
assert torch.allclose(a_tp1, a_tlora / 4) and torch.allclose(b_tp1, b_tlora / 4)

lora = layers["LoRA"]
poly_one = build_layer(base, tp.TensorPolyConfig(method="poly", n_tasks=N_TASKS, rank=RANK, n_skills=1)).double()
with torch.no_grad():
    poly_one.poly_lora_a.copy_(lora.lora_a.reshape(1, 1, D_IN, RANK))
    poly_one.poly_lora_b.copy_(lora.lora_b.reshape(1, 1, RANK, D_OUT))
    assert torch.allclose(poly_one.update(x, task_ids), lora.update(x, None))
print("uniform TensorPoly-I == TLoRA / K, and Poly with one skill == LoRA")

# %% [markdown]
# ## 3. How many routing parameters
#
# Per adapted layer and per task, the router stores one logit per weight it produces: S for Poly,
# H S for MHR, K for TensorPoly-I and N K for TensorPoly-II. The router's size does not depend on the
# layer's width, and the experts' size does. On T5-large (432 adapted linears) with 11 tasks, S = K = 8,
# H = 8 heads, N = 2 and rank 1, counted on a model built on the `meta` device:

# %%
large = {
    "LoRA": tp.TensorPolyConfig(method="lora", rank=1),
    "Poly": tp.TensorPolyConfig(method="poly", rank=1, n_tasks=11, n_skills=8),
    "MHR": tp.TensorPolyConfig(method="mhr", rank=1, n_tasks=11, n_skills=8, n_splits=8),
    "TensorPoly-I": tp.TensorPolyConfig(method="tensorpoly-1", rank=1, n_tasks=11, n_terms=8, order=2),
    "TensorPoly-II": tp.TensorPolyConfig(method="tensorpoly-2", rank=1, n_tasks=11, n_terms=8, order=2),
}
router_counts, expert_counts = {}, {}
for name, config in large.items():
    model = build_meta_model("t5-large-lm-adapt")
    tp.apply_adapters(model, config)
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    router_counts[name] = sum(count for n, count in trainable.items() if ".router." in n)
    expert_counts[name] = sum(count for n, count in trainable.items() if ".router." not in n)
    print(f"{name:>13}: routing {router_counts[name]:>7,}   experts {expert_counts[name]:>10,}")

# %%
fig, ax = plt.subplots(figsize=(8, 3.2), constrained_layout=True)
names = list(large)
position = np.arange(len(names))
ax.bar(position - 0.2, [expert_counts[n] for n in names], width=0.4, label="experts (A, B or leaves)", color="tab:orange")
ax.bar(position + 0.2, [max(router_counts[n], 1) for n in names], width=0.4, label="routing", color="tab:green")
ax.set_xticks(position, labels=names)
ax.set(yscale="log", ylabel="trainable parameters", title="T5-large, 432 adapted linears, 11 tasks, rank 1")
ax.legend()
plt.show()

# %%
n_layers = 432
assert router_counts["LoRA"] == 0
assert router_counts["Poly"] == router_counts["TensorPoly-I"] == n_layers * 11 * 8
assert router_counts["MHR"] == n_layers * 11 * 8 * 8
assert router_counts["TensorPoly-II"] == n_layers * 11 * 2 * 8
assert expert_counts["TensorPoly-I"] == expert_counts["TensorPoly-II"] < expert_counts["LoRA"]
assert expert_counts["Poly"] == expert_counts["MHR"] == 8 * expert_counts["LoRA"]

# %% [markdown]
# ## What this notebook showed
#
# - Poly and TensorPoly-I route the same number of experts per task (8 here) but their experts differ:
#   whole LoRA modules against tensor-product terms, 8 times LoRA's size against less than LoRA's size.
# - MHR multiplies the router by its heads; TensorPoly-II by its order.
# - Every router sits in the network as a weight node with a `batch` leg; the drawn networks contract
#   to the layers' own updates.
