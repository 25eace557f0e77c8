"""Candidate contraction strategies: which parameter sub-networks are contracted before the inputs.

A strategy is a list of groups of non-input nodes. Each group is contracted once per call into
one tensor (stage 1, no per-token index), then the inputs are contracted with the group results
and the remaining nodes (stage 2). The names follow what a group holds for an adapter ``x A B``:

- ``factors``: every labelled group with its routing weights, so the routed per-example factors
  A (batch, rank, d_in) and B (batch, rank, d_out) are mixed before the input contraction;
- ``terms``: labelled groups without routing, so the unrouted terms A_k are formed and the
  routing weights are applied per token;
- ``dense``: all non-input nodes at once, so the weight update ``A B`` is formed;
- ``direct``: no group, one opt_einsum path over everything, which may contract the input
  through the leaves without forming A.
"""

from __future__ import annotations

from ..network import TensorNetwork

__all__ = ["STRATEGIES", "candidate_groupings"]

STRATEGIES: tuple[str, ...] = ("factors", "terms", "dense", "direct")


def _labelled_groups(network: TensorNetwork, roles: tuple[str, ...]) -> list[tuple[str, ...]]:
    groups: dict[str, list[str]] = {}
    for node in network.nodes:
        if node.group is not None and node.role in roles:
            groups.setdefault(node.group, []).append(node.name)
    return [tuple(names) for names in groups.values()]


def candidate_groupings(network: TensorNetwork, strategies: tuple[str, ...] = STRATEGIES) -> dict[str, list[tuple[str, ...]]]:
    """Return strategy name to its groups of node names, skipping duplicates and empty choices.

    A strategy whose groups equal an earlier one's (``terms`` for an unrouted adapter equals
    ``factors``) is left out, so every candidate is a distinct plan.
    """
    unknown = [name for name in strategies if name not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategy {unknown[0]!r}; known strategies are {STRATEGIES}")
    builders = {
        "factors": lambda: _labelled_groups(network, ("parameter", "routing")),
        "terms": lambda: _labelled_groups(network, ("parameter",)),
        "dense": lambda: [tuple(node.name for node in network.nodes if node.role != "input")],
        "direct": lambda: [],
    }
    candidates: dict[str, list[tuple[str, ...]]] = {}
    seen: list[set[tuple[str, ...]]] = []
    for name in strategies:
        # A group of one node is contracted with nothing, so it is dropped.
        groups = [group for group in builders[name]() if len(group) > 1]
        if (not groups and name != "direct") or set(groups) in seen:
            continue
        seen.append(set(groups))
        candidates[name] = groups
    return candidates
