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
# # 2. Contraction planning
#
# **Question.** A TensorPoly-I update `x A B` is a network of seven tensors: the input, N leaves per
# factor and the routing weights of each factor. In which order should they be contracted, what does
# each order cost in FLOPs and memory, and does the best order change with the batch, the sequence
# length, the order N and the number of terms K?
#
# Steps:
# 1. The network at T5-large shapes and the paths opt_einsum finds for it as one einsum.
# 2. The planner's strategies: contract parameter groups first, then the input.
# 3. How the cheapest strategy moves with batch, sequence length, order and terms (plotted).
# 4. The planner used for another adapter, LoKr, in a few lines.
#
# Every number here is a FLOP or element count from `opt_einsum.contract_path`, so it does not
# depend on the machine. Wall-clock timings are in `tensorpoly-tn bench planner`.

# %%
# %matplotlib inline
import random

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap

from tensorpoly_tn.network import TensorNetwork
from tensorpoly_tn.planner import STRATEGIES, plan
from tensorpoly_tn.planner.adapters import tlora_network
from tensorpoly_tn.tlora import leaf_length

random.seed(0)
np.random.seed(0)
torch.manual_seed(0)

OUTPUT = ("batch", "seq", "d_out")


def tensorpoly_network(batch=8, seq=256, order=2, n_terms=8, rank=8, d_in=1024, d_out=2816):
    """The TensorPoly-I network of one T5-large feed-forward input layer (wi_0: 1024 -> 2816)."""
    return tlora_network(
        batch, seq, d_in, d_out, rank, n_terms, order,
        leaf_length(d_in, order), leaf_length(d_out, order), normalize="none", routed=True,
    )


# %% [markdown]
# ## 1. One einsum, several paths
#
# With N = 2, K = 8 terms and rank 8, the network is
#
# $$y_{b s o} = \sum_{i, r, k, k'} x_{b s i}\, w_{b k}\, a^{(1)}_{k r i_1} a^{(2)}_{k r i_2}\,
# w_{b k'}\, b^{(1)}_{k' r o_1} b^{(2)}_{k' r o_2},$$
#
# where $i = (i_1, i_2)$ and $o = (o_1, o_2)$ are the fused leaf legs. Written as one einsum, the
# input must be split into the leaf legs. opt_einsum searches for a pairwise order (a *path*); its
# optimisers trade search time for path quality.

# %%
network = tensorpoly_network()
print(network.describe())
print("einsum:", network.equation(OUTPUT))
print()
print(f"{'optimize':>8} {'FLOPs':>10} {'largest':>10}  path")
costs = {}
for optimize in ("greedy", "branch-2", "dp", "optimal"):
    cost = network.cost(OUTPUT, optimize=optimize)
    costs[optimize] = cost
    print(f"{optimize:>8} {cost.flops:>10.3e} {cost.largest_intermediate:>10.3e}  {list(cost.path)}")
print(f"{'naive':>8} {costs['greedy'].naive_flops:>10.3e}")

# %% [markdown]
# The exhaustive `optimal` search, `dp` and `greedy` agree here; the `branch-2` search (what
# opt_einsum's `"auto"` uses for 7 tensors, version 3.4) returns a path several times more
# expensive. Every path beats the naive loop over all indices by five orders of magnitude.

# %%
assert costs["optimal"].flops == costs["dp"].flops == costs["greedy"].flops
assert costs["branch-2"].flops > 2 * costs["optimal"].flops
assert costs["optimal"].naive_flops > 1e5 * costs["optimal"].flops

# %% [markdown]
# ## 2. The planner's strategies
#
# The planner does not hand the whole network to one einsum. It can first contract groups of
# parameter tensors that carry no per-token index, once per call, then contract the input with the
# results. The candidates are:
#
# | strategy | stage 1 (once per call) | stage 2 (per token) |
# |---|---|---|
# | `factors` | leaves and routing weights of A and of B: per-example A (batch, rank, d_in), B | `x A B` |
# | `terms` | leaves of A and of B: the unrouted terms A_k, B_k | input, terms and routing weights |
# | `dense` | everything but the input: the weight update (batch, d_in, d_out) | `x dW` |
# | `direct` | nothing | one opt_einsum path over all tensors |
#
# `plan` ranks them by an estimated cost, FLOPs plus weighted memory traffic and a per-call overhead
# (`tensorpoly_tn.planner.costs`, weights estimated for a 2-core CPU), and keeps the cheapest;
# `strategy=` forces one. The FLOPs below do not depend on those weights.

# %%
print(plan(network, OUTPUT).report().describe())
print()
print(f"{'strategy':>8} {'FLOPs':>10} {'largest intermediate':>21}")
forced = {}
for strategy in STRATEGIES:
    report = plan(network, OUTPUT, strategy=strategy).report()
    forced[strategy] = report
    print(f"{strategy:>8} {report.flops:>10.3e} {report.largest_intermediate:>21.3e}")

# %% [markdown]
# At batch 8 and 256 tokens, `factors` wins: A and B are built once per example (about 4 MFLOPs),
# and each token then costs two thin matrix products. `dense` is more than a hundred times more
# expensive, because it builds a full 1024 x 2816 update for each example.

# %%
auto = plan(network, OUTPUT).report()
assert auto.strategy == "factors"
assert auto.cost == min(auto.candidate_costs.values())
assert auto.flops == min(report.flops for report in forced.values())
assert forced["dense"].flops > 100 * forced["factors"].flops

# %% [markdown]
# The `direct` candidate is one opt_einsum path, so it inherits the optimiser's choice. With
# `optimize="dp"` it finds the 1.33e8-FLOP path of section 1, which is close to `factors` but still
# not below it.

# %%
dp_report = plan(network, OUTPUT, optimize="dp").report()
print({name: f"{flops:.3e}" for name, flops in dp_report.candidates.items()})
assert dp_report.candidates["direct"] == costs["dp"].flops
assert dp_report.strategy == "factors"

# %% [markdown]
# A plan is made once from shapes and reused. Called with other batch or sequence sizes, it plans the
# new shapes once, caches them, and may pick another strategy. The result always equals the
# materialised update: here with random tensors in float64.

# %%
small = tensorpoly_network(batch=2, seq=3, d_in=30, d_out=20, rank=2, n_terms=3, order=2)
update = plan(small, OUTPUT)
shapes = {node.name: node.shape for node in small.nodes}
tensors = {name: torch.randn(shape, dtype=torch.float64) for name, shape in shapes.items()}


def materialised(t):
    """x A B with A (batch, d_in, rank) and B (batch, rank, d_out) built with torch.kron."""
    a_terms = torch.stack([torch.stack([torch.kron(t["a_0"][k, r], t["a_1"][k, r])[:30] for r in range(2)]) for k in range(3)])
    b_terms = torch.stack([torch.stack([torch.kron(t["b_0"][k, r], t["b_1"][k, r])[:20] for r in range(2)]) for k in range(3)])
    a = torch.einsum("bk,kri->bir", t["w_a"], a_terms)  # (batch, d_in, rank)
    b = torch.einsum("bk,kro->bro", t["w_b"], b_terms)  # (batch, rank, d_out)
    return torch.einsum("bsi,bir,bro->bso", t["x"], a, b)


for seq in (3, 1, 50):
    tensors["x"] = torch.randn(2, seq, 30, dtype=torch.float64)
    result = update(**tensors)
    print(f"seq {seq:>2}: strategy {update.report().strategy}, output {tuple(result.shape)}")
    assert torch.allclose(result, materialised(tensors))

# %% [markdown]
# ## 3. How the cheapest strategy moves
#
# Two sweeps around the point above (batch 8, 256 tokens, N = 2, K = 8, rank 8): the FLOPs of every
# strategy against the sequence length, and against the batch when each example has a single token
# (one decoding step).

# %%
def candidate_flops(**sizes):
    """FLOPs of every strategy for the network with ``sizes`` changed."""
    return plan(tensorpoly_network(**sizes), OUTPUT).report().candidates


colours = {"factors": "tab:orange", "terms": "tab:green", "dense": "tab:grey", "direct": "tab:blue"}
sweeps = [
    ("sequence length (batch 8)", "seq", [1, 2, 4, 16, 64, 256, 1024], {}),
    ("batch (1 token per example)", "batch", [1, 2, 4, 8, 16, 32, 64, 128], {"seq": 1}),
]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
sweep_results = {}
for ax, (label, name, values, fixed) in zip(axes, sweeps):
    rows = [candidate_flops(**fixed, **{name: value}) for value in values]
    sweep_results[name] = dict(zip(values, rows))
    for strategy in STRATEGIES:
        ax.plot(values, [row[strategy] for row in rows], marker="o", label=strategy, color=colours[strategy])
    ax.set(xscale="log", yscale="log", xlabel=label, ylabel="FLOPs")
axes[0].legend()
fig.suptitle("TensorPoly-I on wi_0 (1024 -> 2816), N = 2, K = 8, rank 8")
plt.show()

# %% [markdown]
# Counting FLOPs only: with one token per example, building A and B costs as much as using them, so
# skipping that step pays. `direct` has the fewest FLOPs for small batches and `terms` (which builds
# the unrouted terms once for the whole batch, not once per example) from batch 16 on. From two tokens
# per example on, `factors` has the fewest.

# %%
winner = {name: {value: min(row, key=row.get) for value, row in rows.items()} for name, rows in sweep_results.items()}
print("winner by sequence length:", winner["seq"])
print("winner by batch at 1 token:", winner["batch"])
assert winner["seq"][1] == "direct" and all(winner["seq"][seq] == "factors" for seq in (2, 4, 16, 64, 256, 1024))
assert winner["batch"][1] == "direct" and winner["batch"][128] == "terms"

# %% [markdown]
# Now order N and terms K, at one decoding step for a batch of 8. The map shows the strategy with the
# fewest FLOPs for each (N, K); the numbers are its FLOPs divided by those of `factors`, so a cell below
# 1 is a saving that a fixed hand-written path (`factors`) would miss.

# %%
orders, terms = [1, 2, 3, 4, 6, 8], [1, 2, 4, 8, 16, 32, 64]
grid = np.zeros((len(orders), len(terms)), dtype=int)
ratio = np.zeros((len(orders), len(terms)))
for row, order in enumerate(orders):
    for col, n_terms in enumerate(terms):
        flops = candidate_flops(batch=8, seq=1, order=order, n_terms=n_terms)
        best = min(flops, key=flops.get)
        grid[row, col] = STRATEGIES.index(best)
        ratio[row, col] = flops[best] / flops["factors"]

fig, ax = plt.subplots(figsize=(7, 3.8), constrained_layout=True)
ax.imshow(grid, cmap=ListedColormap([colours[name] for name in STRATEGIES]), vmin=0, vmax=len(STRATEGIES) - 1, aspect="auto")
for (row, col), value in np.ndenumerate(ratio):
    ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=8)
ax.set_xticks(range(len(terms)), labels=terms)
ax.set_yticks(range(len(orders)), labels=orders)
ax.set(xlabel="terms K", ylabel="order N", title="fewest FLOPs at batch 8, 1 token (colour); FLOPs / factors")
handles = [plt.Rectangle((0, 0), 1, 1, color=colours[name]) for name in STRATEGIES]
ax.legend(handles, STRATEGIES, loc="upper left", bbox_to_anchor=(1.01, 1))
plt.show()

# %%
names = np.array(STRATEGIES)[grid]
print("winner by order (rows) and terms (columns):")
for order, row in zip(orders, names):
    print(f"  N={order}: {' '.join(f'{name:>7}' for name in row)}")
assert set(names[orders.index(1)]) == {"direct"}
assert all(set(names[orders.index(order)]) == {"terms"} for order in (3, 4, 6, 8))
assert ratio.min() < 0.9

# %% [markdown]
# For a single decoding step the answer depends on N: at order 1 and 2 one opt_einsum path over
# everything has the fewest FLOPs, from order 3 on the leaves are cheaper to multiply out once per
# batch as unrouted terms. No single hand-written path is best everywhere, which is why the layers
# plan. The planner's own pick also weighs memory traffic and call overhead, so at these small
# per-token sizes it can differ from the FLOP count; the next cell prints both and checks that the
# pick has the lowest estimated cost.

# %%
for order in (1, 3, 8):
    report = plan(tensorpoly_network(batch=8, seq=1, order=order, n_terms=8), OUTPUT).report()
    fewest = min(report.candidates, key=report.candidates.get)
    print(f"N={order}, K=8: fewest FLOPs {fewest:>7}, planner's pick {report.strategy:>7}")
    assert report.cost == min(report.candidate_costs.values())

# %% [markdown]
# ## 4. The planner for another adapter: LoKr
#
# LoKr writes the weight update as a Kronecker product of two small matrices,
# $\Delta W = C \otimes D$ with C (d_in_0, d_out_0) and D (d_in_1, d_out_1). As a network: the input's
# `d_in` is fused from the legs of C and D, and so is `d_out`. Five lines describe it; the planner does
# the rest.

# %%
lokr = TensorNetwork()
lokr.add("x", ("batch", "seq", "d_in"), (4, 16, 96), role="input")
lokr.add("C", ("d_in_0", "d_out_0"), (8, 4), group="W").add("D", ("d_in_1", "d_out_1"), (12, 16), group="W")
lokr.fuse("d_in", ("d_in_0", "d_in_1"), 96).fuse("d_out", ("d_out_0", "d_out_1"), 64)
lokr_update = plan(lokr, OUTPUT)

x = torch.randn(4, 16, 96, dtype=torch.float64)
c, d = torch.randn(8, 4, dtype=torch.float64), torch.randn(12, 16, dtype=torch.float64)
y = lokr_update(x, c, d)
print(lokr_update.report().describe())

# %%
lokr_report = lokr_update.report()
assert torch.allclose(y, x @ torch.kron(c, d))
assert lokr_report.strategy == "direct" and lokr_report.candidates["factors"] > 5 * lokr_report.flops
assert lokr_report.cost == min(lokr_report.candidate_costs.values())

# %% [markdown]
# The planner kept the weight factored: `direct` contracts the input with C and then with D, at a fifth
# of the FLOPs of forming the 96 x 64 weight first (the `factors` candidate, whose one group is C and D). More adapters written this way (tensor-train LoRA, CP, Tucker) are in
# `tests/test_adapter_zoo.py`, and the guide for adapter authors is in `docs/planner.md`.
#
# ## What this notebook showed
#
# - opt_einsum's optimisers find paths whose FLOPs differ several-fold on the same network.
# - Contracting parameter groups first (`factors`) needs the fewest FLOPs for training-sized inputs.
# - For a single token per example the FLOP winner moves with batch and order: `direct` at small batch
#   or low order, `terms` at large batch or order 3 and up. The planner picks by an estimated cost
#   that also counts memory traffic and calls.
# - A new adapter is a few `add` and `fuse` calls; the planned result equals the materialised weight.
