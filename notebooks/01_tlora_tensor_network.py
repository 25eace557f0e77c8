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
# # 1. TLoRA as a tensor network
#
# **Question.** LoRA adapts a frozen weight with two thin matrices, A (d_in x r) and B (r x d_out).
# TLoRA writes each column of A and B as a sum of K tensor products of N short vectors (the *leaves*).
# What does that look like as a tensor network, how long are the leaves, how many parameters does it
# save on T5-large, and is the network's output the same as the materialised A?
#
# Steps:
# 1. LoRA's update `x A B` as a network.
# 2. One TLoRA column: a sum of Kronecker products, checked against `numpy.kron`.
# 3. The TLoRA network diagram.
# 4. Leaf lengths `ceil(d ** (1/N))` for the T5-large widths.
# 5. Parameter counts against LoRA for every adapted T5-large layer.
# 6. The network's output against `x A B` with A and B materialised.

# %%
# %matplotlib inline
import random
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch

import tensorpoly_tn as tp
from tensorpoly_tn.accounting import count_methods, layer_parameter_count
from tensorpoly_tn.planner import plan
from tensorpoly_tn.planner.adapters import lora_network, tlora_network, tlora_nodes
from tensorpoly_tn.tlora import kron_leaves, leaf_length

# tqdm.auto (imported by transformers) warns when ipywidgets is missing; the notebook shows no bars.
warnings.filterwarnings("ignore", message="IProgress not found")
random.seed(0)
np.random.seed(0)
torch.manual_seed(0)
torch.set_printoptions(precision=4, sci_mode=False)

# %% [markdown]
# ## 1. LoRA as a network
#
# The update of a LoRA layer is $y_{b s o} = \sum_{i, r} x_{b s i} A_{i r} B_{r o}$. In a tensor
# network every tensor is a node and every index is a leg: a leg shared by two nodes is summed over,
# an open leg is an index of the output. `lora_network` builds this network with the widths of a
# T5-large feed-forward input layer (`wi_0`, 1024 -> 2816) and rank 8.

# %%
lora_net = lora_network(batch=4, seq=128, d_in=1024, d_out=2816, rank=8)
print(lora_net.describe())
print("einsum:", lora_net.equation(("batch", "seq", "d_out")))

# %%
fig, ax = plt.subplots(figsize=(4.5, 4.5))
lora_net.draw(output=("batch", "seq", "d_out"), ax=ax)
ax.set_title("LoRA: x A B")
plt.show()

# %%
assert lora_net.equation(("batch", "seq", "d_out")) == "bsi,ir,ro->bso"

# %% [markdown]
# ## 2. One TLoRA column is a sum of Kronecker products
#
# TLoRA replaces column j of A by
#
# $$A_{:, j} = \Big[\sum_{k=1}^{K} a^{(1)}_{k j} \otimes a^{(2)}_{k j} \otimes \dots \otimes a^{(N)}_{k j}\Big]_{1:d_\mathrm{in}},$$
#
# with N leaves of length $L = \lceil d_\mathrm{in}^{1/N} \rceil$ per term, leaf 1 the most significant
# factor (the order of `numpy.kron`), and the product of length $L^N \ge d_\mathrm{in}$ cut to its first
# $d_\mathrm{in}$ entries. `kron_leaves` builds this from a leaf tensor of shape (order, term, rank, leaf).
# Here: d_in = 10, N = 3 leaves of length 3 (27 entries, cut to 10), K = 2 terms, rank 1.

# %%
d_in, order, n_terms = 10, 3, 2
leaf = leaf_length(d_in, order)
leaves = torch.randn(order, n_terms, 1, leaf, dtype=torch.float64)  # (order, term, rank, leaf)
per_term = kron_leaves(leaves, d_in, normalize="none")  # (term, rank, d_in)
column = per_term.sum(0)[0]  # (d_in,)

by_numpy = sum(
    np.kron(np.kron(leaves[0, k, 0].numpy(), leaves[1, k, 0].numpy()), leaves[2, k, 0].numpy())[:d_in]
    for k in range(n_terms)
)
print(f"leaf length {leaf}, full product length {leaf**order}, kept {d_in}")
print("column:", np.round(column.numpy(), 4))

# %%
assert leaf == 3 and leaf**order == 27
assert np.allclose(column.numpy(), by_numpy)

# %% [markdown]
# With `normalize="pairwise"` (the default of the layers, as in TensorPoly) every product of two
# neighbouring leaves that feeds a further product is layer-normalised, which keeps the scale of a
# high-order product under control. The root product is not normalised, and with N = 2 nothing is,
# because the only product is the root.

# %%
two_leaves = torch.randn(2, n_terms, 1, leaf_length(d_in, 2), dtype=torch.float64)
same = torch.allclose(kron_leaves(two_leaves, d_in, "pairwise"), kron_leaves(two_leaves, d_in, "none"))
differs = not torch.allclose(kron_leaves(leaves, d_in, "pairwise"), kron_leaves(leaves, d_in, "none"))
print("order 2, pairwise equals none:", same)
print("order 3, pairwise differs from none:", differs)
assert same and differs

# %% [markdown]
# ## 3. The TLoRA network
#
# In the network, each leaf is a node with legs (term, rank, leaf leg). The leaf legs of A together
# stand for `d_in`: the planner *fuses* them, meaning that `d_in` is the first d_in entries of their
# row-major flattening. The term leg joins the N leaves of one term (a hyperedge, drawn as a dot), and
# so does the rank leg, which joins A to B. Below, a T5-large attention projection (1024 -> 1024) with
# N = 2 leaves of length 32, K = 4 terms, rank 8, and no routing (plain TLoRA).

# %%
tlora_net = tlora_network(
    batch=4, seq=128, d_in=1024, d_out=1024, rank=8, n_terms=4, order=2,
    leaf_in=leaf_length(1024, 2), leaf_out=leaf_length(1024, 2), normalize="none", routed=False,
)
print(tlora_net.describe())
print("einsum:", tlora_net.equation(("batch", "seq", "d_out")))

# %%
fig, ax = plt.subplots(figsize=(6, 6))
tlora_net.draw(output=("batch", "seq", "d_out"), ax=ax)
ax.set_title("TLoRA, order 2: x (sum_k a1 (x) a2) (sum_k b1 (x) b2)")
plt.show()

# %%
assert [node.name for node in tlora_net.nodes] == ["x", "a_0", "a_1", "b_0", "b_1"]
assert tlora_net.fused["d_in"] == (("d_in_0", "d_in_1"), 1024)

# %% [markdown]
# ## 4. Leaf lengths for the T5-large widths
#
# T5-large (v1.1, LM-adapted) has d_model = 1024 and d_ff = 2816. The leaf length is the smallest L with
# $L^N \ge d$. The padding $L^N - d$ is never stored as a parameter: it only exists inside the
# product before the cut.

# %%
widths, orders = (1024, 2816), (1, 2, 3, 4, 8)
print(f"{'width':>6} {'N':>3} {'L':>5} {'L^N':>8} {'N*L':>6}")
for width in widths:
    for n in orders:
        length = leaf_length(width, n)
        print(f"{width:>6} {n:>3} {length:>5} {length**n:>8} {n * length:>6}")

# %%
for width in widths:
    for n in orders:
        length = leaf_length(width, n)
        assert length**n >= width and (length - 1) ** n < width
assert leaf_length(1024, 2) == 32 and leaf_length(2816, 2) == 54 and leaf_length(1024, 8) == 3

# %% [markdown]
# ## 5. Parameter counts against LoRA on T5-large
#
# Per adapted layer, LoRA trains $r (d_\mathrm{in} + d_\mathrm{out})$ numbers and TLoRA trains
# $N K r (L_\mathrm{in} + L_\mathrm{out})$. T5-large's adapted linears come in three shapes: the
# attention projections q, k, v, o (1024 -> 1024), the gated feed-forward inputs wi_0, wi_1
# (1024 -> 2816) and its output wo (2816 -> 1024). The table uses rank 1 (both counts are linear in r)
# and K = 8 terms.

# %%
shapes = {"q, k, v, o": (1024, 1024), "wi_0, wi_1": (1024, 2816), "wo": (2816, 1024)}
lora = tp.TensorPolyConfig(method="lora", rank=1)
print(f"{'layer':>11} {'LoRA':>6}" + "".join(f" {'N=' + str(n):>6}" for n in orders))
tlora_counts = {}
for label, (d_in_, d_out_) in shapes.items():
    row = [layer_parameter_count(tp.TensorPolyConfig(method="tlora", rank=1, n_terms=8, order=n), d_in_, d_out_) for n in orders]
    tlora_counts[label] = row
    print(f"{label:>11} {layer_parameter_count(lora, d_in_, d_out_):>6}" + "".join(f" {count:>6}" for count in row))

# %% [markdown]
# At order 1 a TLoRA factor is K full-width columns summed, so it costs K times LoRA. From order 2 on
# it is far smaller: for the 1024 -> 1024 projections, $2 \cdot 8 \cdot (32 + 32) = 1024$ against
# LoRA's 2048.

# %%
assert tlora_counts["q, k, v, o"][0] == 8 * 2048
assert tlora_counts["q, k, v, o"][1] == 2 * 8 * (32 + 32) == 1024
assert all(row[1] < layer_parameter_count(lora, *shapes[label]) for label, row in tlora_counts.items())

# %% [markdown]
# The same counts over the whole model, counted on a T5-large built on PyTorch's `meta` device (shapes
# only, no weights, no download) after `apply_adapters`, and compared with the closed form.

# %%
configs = [tp.TensorPolyConfig(method="lora", rank=1)] + [
    tp.TensorPolyConfig(method="tlora", rank=1, n_terms=8, order=n) for n in (2, 3, 4, 8)
]
counts = count_methods("t5-large-lm-adapt", configs)
labels = ["LoRA"] + [f"TLoRA N={n}" for n in (2, 3, 4, 8)]
print(f"adapted layers: {len(counts[0].shapes)}, base parameters: {counts[0].base_parameters:,}")
for label, count in zip(labels, counts):
    print(f"{label:>12}: {count.counted:>9,} trainable ({100 * count.share:.3f}% of the base model)")

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar(labels, [count.counted for count in counts], color=["tab:grey"] + ["tab:orange"] * 4)
ax.set_ylabel("trainable parameters")
ax.set_title("T5-large, rank 1, K = 8 terms")
plt.show()

# %%
assert len(counts[0].shapes) == 432  # 24 encoder blocks x 7 linears + 24 decoder blocks x 11 linears
assert all(count.counted == count.closed_form for count in counts)
assert all(count.counted < counts[0].counted for count in counts[1:])

# %% [markdown]
# ## 6. The network's output equals `x A B` with A materialised
#
# A `TLoRALinear` layer stores the leaves. `factors()` materialises A (1, d_in, rank) and B
# (1, rank, d_out) with `kron_leaves`. The planner contracts the same leaves as a network without
# forming A when that is cheaper. Both must give the same update. With `normalize="pairwise"` the
# normalised children of the root product enter the network as nodes (`tlora_nodes`), because a layer
# norm is not a contraction. Order 4 is used so that the normalisation matters.

# %%
base = torch.nn.Linear(100, 60, dtype=torch.float64)
layer = tp.TLoRALinear(base, rank=3, n_terms=4, order=4, normalize="pairwise")
with torch.no_grad():
    layer.leaves_b.normal_()  # B starts at zero; give it values so the comparison means something
x = torch.randn(2, 5, 100, dtype=torch.float64)  # (batch, seq, d_in)

a, b = layer.factors()  # (1, d_in, rank), (1, rank, d_out)
dense = x @ a[0] @ b[0]  # (batch, seq, d_out)

network = tlora_network(2, 5, 100, 60, 3, 4, 4, layer.leaf_in, layer.leaf_out, normalize="pairwise", routed=False)
planned = plan(network, output=("batch", "seq", "d_out"))
nodes = tlora_nodes(layer.leaves_a, "pairwise") + tlora_nodes(layer.leaves_b, "pairwise")
through_network = planned(x, *nodes)

print("leaf_in, leaf_out:", layer.leaf_in, layer.leaf_out)
print("A:", tuple(a.shape), " B:", tuple(b.shape), " update:", tuple(through_network.shape))
print(planned.report().describe())

# %% tags=["nbval-ignore-output"]
# The last digits of a float64 rounding error depend on the BLAS build, so nbval skips this output.
print("max |difference|:", f"{(through_network - dense).abs().max().item():.1e}")

# %%
assert torch.allclose(through_network, dense, rtol=1e-10, atol=1e-10)
assert torch.allclose(layer(x), base(x) + layer.scaling * dense)

# %% [markdown]
# ## What this notebook showed
#
# - LoRA's update is a three-node network; TLoRA replaces A and B by N leaves each, joined by a term
#   leg and fused into `d_in` (or `d_out`).
# - A leaf has length $\lceil d^{1/N} \rceil$: 32 and 54 at order 2 for the T5-large widths, 3 at order 8.
# - With K = 8 terms and rank 1, TLoRA of order 2 or more trains fewer parameters than LoRA on every
#   adapted T5-large layer, and the counts on the built model equal the closed form.
# - The planned network and the materialised factors give the same update.
#
# Notebook 2 looks at the order in which the planner contracts such networks.
