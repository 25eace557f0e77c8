r"""Tensor networks with named indices: the description every adapter is planned from.

A :class:`TensorNetwork` lists named tensors (nodes). Each axis of a node carries a named index
with a size, for example ``("batch", "seq", "d_in")``. Two nodes that share an index are joined
by an edge and the index is summed over unless it is an output index, so the network stands for
the einsum

.. math::

    Y_{\mathrm{out}} = \sum_{\text{other indices}} \prod_{v} T^{(v)}_{\mathrm{indices}(v)}.

Einsum letters come from :func:`tensorpoly_tn.indices.assign_letters`. A fused index (see
:meth:`TensorNetwork.fuse`) is a data axis such as ``d_in`` that the parameters see as several
smaller legs. Its entries are the first ``size`` entries of the row-major flattening of the legs.
This is how a TLoRA factor cuts its Kronecker product to the layer width.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import opt_einsum

from .indices import assign_letters, equation

__all__ = ["Role", "ROLES", "Node", "NetworkCost", "TensorNetwork", "draw_network"]

Role = Literal["input", "parameter", "routing"]
#: ``input``: data that changes per token; ``parameter``: shared by every example;
#: ``routing``: built from parameters once per example (task weights), never per token.
ROLES: tuple[str, ...] = ("input", "parameter", "routing")


@dataclass(frozen=True)
class Node:
    """One tensor of a network: its name, index names, sizes, role and optional group label."""

    name: str
    indices: tuple[str, ...]
    shape: tuple[int, ...]
    role: Role = "parameter"
    group: str | None = None


@dataclass(frozen=True)
class NetworkCost:
    """Cost of contracting a network in one einsum, as reported by :func:`opt_einsum.contract_path`."""

    equation: str
    naive_flops: int
    flops: int
    largest_intermediate: int
    path: tuple[tuple[int, ...], ...]


class TensorNetwork:
    """Named tensors whose axes carry named, sized indices.

    Parameters
    ----------
    hyper_indices
        Indices allowed on more than two places (nodes and output together), such as ``batch``
        shared by an input, the routing weights and the output. Any other index joins at most two.

    Examples
    --------
    LoRA's update ``x A B``:

    >>> net = TensorNetwork()
    >>> net = net.add("x", ("batch", "seq", "d_in"), (8, 256, 1024), role="input")
    >>> net = net.add("A", ("d_in", "rank"), (1024, 16)).add("B", ("rank", "d_out"), (16, 2816))
    >>> net.equation()
    'bsi,ir,ro->bso'
    """

    def __init__(self, hyper_indices: Iterable[str] = ()) -> None:
        self.hyper_indices = frozenset(hyper_indices)
        self._nodes: dict[str, Node] = {}
        self._fused: dict[str, tuple[tuple[str, ...], int]] = {}

    # ----------------------------------------------------------------- building
    def add(
        self,
        name: str,
        indices: Sequence[str],
        shape: Sequence[int],
        *,
        role: Role = "parameter",
        group: str | None = None,
    ) -> TensorNetwork:
        """Add a node and return the network, so that calls chain.

        Raises ``ValueError`` for a duplicate name, an unknown role, an index repeated on the node,
        a shape of another length, a size below 1 or an index whose size disagrees with another node.
        """
        indices, shape = tuple(indices), tuple(int(size) for size in shape)
        if name in self._nodes:
            raise ValueError(f"tensor name {name!r} is already in the network; give each tensor its own name")
        if role not in ROLES:
            raise ValueError(f"role of tensor {name!r} must be one of {ROLES}, got {role!r}")
        if len(indices) != len(shape):
            raise ValueError(
                f"tensor {name!r} has {len(indices)} indices {indices} but a shape of {len(shape)} sizes {shape}"
            )
        repeated = sorted({index for index in indices if indices.count(index) > 1})
        if repeated:
            raise ValueError(
                f"index {repeated[0]!r} appears twice on tensor {name!r}; traces and diagonals are not "
                "supported, give each axis its own index"
            )
        for index, size in zip(indices, shape):
            if size < 1:
                raise ValueError(
                    f"tensor {name!r} has size {size} on index {index!r}; every dimension must be at least 1"
                )
            self._check_size(index, size, name)
        self._nodes[name] = Node(name, indices, shape, role, group)
        return self

    def fuse(self, name: str, parts: Sequence[str], size: int) -> TensorNetwork:
        """Declare the data index ``name`` as the first ``size`` entries of the legs ``parts``.

        Inputs and the output may use ``name`` while parameters use ``parts``. Entry ``e`` of
        ``name`` is the row-major position ``(p_1, ..., p_n)`` of the parts, the first part most
        significant, as in :func:`numpy.kron`. Returns the network.
        """
        parts = tuple(parts)
        if not parts or name in parts:
            raise ValueError(f"fused index {name!r} needs one or more parts other than itself, got {parts}")
        sizes = [self.sizes.get(part) for part in parts]
        if any(part_size is None for part_size in sizes):
            missing = [part for part, part_size in zip(parts, sizes) if part_size is None]
            raise ValueError(f"fused index {name!r}: parts {missing} are on no tensor; add their tensors first")
        if size < 1 or size > math.prod(sizes):
            raise ValueError(
                f"fused index {name!r} has size {size}; it must be between 1 and the product of its part "
                f"sizes {sizes} = {math.prod(sizes)}"
            )
        self._check_size(name, size, f"fused index {name!r}")
        self._fused[name] = (parts, int(size))
        return self

    def _check_size(self, index: str, size: int, owner: str) -> None:
        for node in self._nodes.values():
            if index in node.indices and node.shape[node.indices.index(index)] != size:
                known = node.shape[node.indices.index(index)]
                raise ValueError(
                    f"index {index!r} has size {size} on {owner if owner.startswith('fused') else repr(owner)} "
                    f"but size {known} on tensor {node.name!r}; tensors that share an index must agree on its size"
                )
        if index in self._fused and self._fused[index][1] != size:
            raise ValueError(
                f"index {index!r} has size {size} on tensor {owner!r} but it is fused with size "
                f"{self._fused[index][1]}"
            )

    # ---------------------------------------------------------------- inspecting
    @property
    def nodes(self) -> tuple[Node, ...]:
        """The nodes in the order they were added."""
        return tuple(self._nodes.values())

    @property
    def fused(self) -> dict[str, tuple[tuple[str, ...], int]]:
        """Fused index name to (parts, size)."""
        return dict(self._fused)

    def node(self, name: str) -> Node:
        """Return the node called ``name``."""
        try:
            return self._nodes[name]
        except KeyError:
            raise KeyError(f"no tensor {name!r} in the network; tensors are {list(self._nodes)}") from None

    @property
    def sizes(self) -> dict[str, int]:
        """Index name to size, fused indices included."""
        sizes = {index: size for node in self._nodes.values() for index, size in zip(node.indices, node.shape)}
        sizes.update({name: size for name, (_, size) in self._fused.items()})
        return sizes

    def expand(self, indices: Sequence[str]) -> tuple[str, ...]:
        """Replace every fused index in ``indices`` by its parts."""
        expanded: list[str] = []
        for index in indices:
            expanded.extend(self._fused[index][0] if index in self._fused else (index,))
        return tuple(expanded)

    def default_output(self) -> tuple[str, ...]:
        """Indices that appear on exactly one node, in order of first appearance (fused ones folded)."""
        counts: dict[str, int] = {}
        for node in self._nodes.values():
            for index in self.expand(node.indices):
                counts[index] = counts.get(index, 0) + 1
        open_legs = [index for index, count in counts.items() if count == 1]
        output: list[str] = []
        for index in open_legs:
            fused = next((name for name, (parts, _) in self._fused.items() if index in parts), None)
            if fused is None:
                output.append(index)
            elif fused not in output and all(part in open_legs for part in self._fused[fused][0]):
                output.append(fused)
            elif fused not in output:
                output.append(index)
        return tuple(output)

    def check(self, output: Sequence[str] | None = None) -> tuple[str, ...]:
        """Validate the network for ``output`` and return the output indices.

        Raises ``ValueError`` for an empty network, an output index that no tensor has, an output
        index listed twice, or an index on more than two places (nodes and output) that is not in
        ``hyper_indices``.
        """
        if not self._nodes:
            raise ValueError("the network has no tensors; add at least one with TensorNetwork.add")
        output = self.default_output() if output is None else tuple(output)
        if len(set(output)) != len(output):
            raise ValueError(f"output {output} lists an index twice; list each output index once")
        sizes = self.sizes
        for index in output:
            if index not in sizes:
                raise ValueError(
                    f"output index {index!r} is on no tensor of the network; indices are {sorted(sizes)}"
                )
        places: dict[str, list[str]] = {}
        for node in self._nodes.values():
            for index in self.expand(node.indices):
                places.setdefault(index, []).append(node.name)
        for index in self.expand(output):
            places.setdefault(index, []).append("the output")
        for index, owners in places.items():
            if len(owners) > 2 and index not in self.hyper_indices:
                raise ValueError(
                    f"index {index!r} appears on {len(owners)} places ({', '.join(owners)}); an index joins "
                    "at most two, declare it in hyper_indices to allow a hyperedge"
                )
        return output

    def letters(self) -> dict[str, str]:
        """Index name to einsum letter for every index of the network, fused ones included."""
        names = [index for node in self._nodes.values() for index in self.expand(node.indices)]
        return assign_letters(names + list(self._fused))

    def equation(self, output: Sequence[str] | None = None) -> str:
        """Return the einsum equation of the whole network, fused indices written as their parts."""
        output = self.check(output)
        inputs = [self.expand(node.indices) for node in self._nodes.values()]
        return equation(inputs, self.expand(output), self.letters())

    def expanded_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the nodes with fused indices written as their parts."""
        sizes = self.sizes
        return [tuple(sizes[index] for index in self.expand(node.indices)) for node in self._nodes.values()]

    def cost(self, output: Sequence[str] | None = None, optimize: str = "auto") -> NetworkCost:
        """Return the cost of contracting the whole network in one einsum with opt_einsum's ``optimize``."""
        eq = self.equation(output)
        path, info = opt_einsum.contract_path(eq, *self.expanded_shapes(), shapes=True, optimize=optimize)
        return NetworkCost(eq, int(info.naive_cost), int(info.opt_cost), int(info.largest_intermediate), tuple(path))

    def describe(self) -> str:
        """Return one line per node: name, role, group and named shape."""
        lines = []
        for node in self._nodes.values():
            shape = ", ".join(f"{index}={size}" for index, size in zip(node.indices, node.shape))
            group = f" group={node.group}" if node.group else ""
            lines.append(f"{node.name} [{node.role}{group}] ({shape})")
        for name, (parts, size) in self._fused.items():
            lines.append(f"{name}={size} fused from ({', '.join(parts)})")
        return "\n".join(lines)

    def draw(self, output: Sequence[str] | None = None, ax=None):
        """Draw the network as a diagram; see :func:`draw_network`. Returns ``(fig, ax)``."""
        return draw_network(self, output=output, ax=ax)


_ROLE_COLOURS = {"input": "tab:blue", "parameter": "tab:orange", "routing": "tab:green"}


def draw_network(network: TensorNetwork, output: Sequence[str] | None = None, ax=None):
    """Draw ``network`` with matplotlib: nodes on a circle, edges, hyperedges and open legs.

    An index shared by two nodes is a line between them; a hyperedge is a small black dot joined
    to each of its nodes; an output index is a line from its node to the outside. Every line is
    labelled ``name=size``. Node colours give the role (input, parameter, routing).

    Parameters
    ----------
    network
        The network to draw.
    output
        Output indices; ``None`` uses :meth:`TensorNetwork.default_output`.
    ax
        Matplotlib axes to draw on; ``None`` creates a figure.

    Returns
    -------
    tuple
        ``(fig, ax)``.
    """
    import matplotlib.pyplot as plt

    output = network.check(output)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 7))
    else:
        fig = ax.figure
    nodes = network.nodes
    angles = [2 * math.pi * position / len(nodes) for position in range(len(nodes))]
    where = {node.name: (math.cos(angle), math.sin(angle)) for node, angle in zip(nodes, angles)}
    sizes = network.sizes
    expanded_output = network.expand(output)
    owners: dict[str, list[str]] = {}
    for node in nodes:
        for index in network.expand(node.indices):
            owners.setdefault(index, []).append(node.name)

    # Open legs of one node fan out around the direction away from the centre, 0.4 rad apart.
    open_legs: dict[str, list[str]] = {}
    for index, names in owners.items():
        if index in expanded_output and len(names) == 1:
            open_legs.setdefault(names[0], []).append(index)
    spread = {
        index: (position - (len(legs) - 1) / 2) * 0.4 for legs in open_legs.values() for position, index in enumerate(legs)
    }

    for index, names in owners.items():
        label = f"{index}={sizes[index]}"
        points = [where[name] for name in names]
        if index in expanded_output:
            # An open leg points away from the centre of the circle.
            x, y = points[-1] if len(points) == 1 else (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points))
            angle = math.atan2(y, x) + spread.get(index, 0.0)
            end = (1.6 * math.cos(angle), 1.6 * math.sin(angle))
            points = points + [end]
            ax.annotate(label, end, fontsize=8, ha="center", color="tab:red")
        if len(points) == 2:
            (x0, y0), (x1, y1) = points
            ax.plot([x0, x1], [y0, y1], color="grey", zorder=1)
            if index not in expanded_output:  # an open leg is labelled at its end
                ax.annotate(label, ((x0 + x1) / 2, (y0 + y1) / 2), fontsize=8, ha="center")
        elif len(points) > 2:
            hub = (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points))
            for x0, y0 in points:
                ax.plot([x0, hub[0]], [y0, hub[1]], color="grey", linestyle="--", zorder=1)
            ax.scatter([hub[0]], [hub[1]], s=15, color="black", zorder=2)
            ax.annotate(label, hub, fontsize=8, ha="left", va="bottom")

    for node in nodes:
        x, y = where[node.name]
        ax.scatter([x], [y], s=900, color=_ROLE_COLOURS[node.role], zorder=3)
        ax.annotate(node.name, (x, y), ha="center", va="center", fontsize=9, zorder=4)
    ax.set_xlim(-1.9, 1.9)
    ax.set_ylim(-1.9, 1.9)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax
