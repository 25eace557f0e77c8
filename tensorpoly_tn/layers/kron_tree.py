r"""The balanced Kronecker tree of :func:`~tensorpoly_tn.tlora.kron_leaves`, with a hand-written backward pass.

:func:`tree_forward` multiplies nodes (term, rank, leg) pairwise, neighbours first, exactly as
:func:`~tensorpoly_tn.tlora.kron_leaves` does, and with ``normalize="pairwise"`` layer-normalises
every product that feeds a further one. It returns the root product and a :class:`TreeTape` of
the steps. :func:`tree_backward` replays the tape in reverse:

- a product ``P = L (x) R`` of (term, rank, m) and (term, rank, n), flattened to m * n, gives
  ``dL = dP . R`` and ``dR = L . dP`` over the other leg, one ``bmm`` each;
- a layer norm gives its input gradient through ``native_layer_norm_backward`` with the mean
  and reciprocal standard deviation saved by the forward pass.

Nothing here records autograd nodes, so :class:`~tensorpoly_tn.layers.fused.KroneckerUpdate`
can run the whole tree inside one autograd function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..tlora import LAYER_NORM_EPS, NORMALIZE_CHOICES

__all__ = ["TreeTape", "tree_forward", "tree_backward"]


@dataclass
class TreeTape:
    """The steps of one pass through the tree and the tensors its backward pass reads.

    ``values`` contains the nodes, then every intermediate. A step is ``("product", (left, right),
    out, None)`` or ``("norm", (product,), out, (mean, rstd))``, with ids into ``values``.
    """

    values: list[torch.Tensor | None]
    n_nodes: int
    steps: list[tuple] = field(default_factory=list)
    root: int = 0

    def add(self, value: torch.Tensor) -> int:
        """Append ``value`` and return its id."""
        self.values.append(value)
        return len(self.values) - 1


def tree_forward(nodes: tuple[torch.Tensor, ...], normalize: str) -> tuple[torch.Tensor, TreeTape]:
    """Multiply ``nodes`` (each (term, rank, leg)) by the balanced tree.

    Returns the root (term, rank, product of legs) and the tape for :func:`tree_backward`.
    """
    if normalize not in NORMALIZE_CHOICES:
        raise ValueError(f"normalize must be one of {NORMALIZE_CHOICES}, got {normalize!r}")
    tape = TreeTape(list(nodes), len(nodes))
    level = list(range(len(nodes)))
    while len(level) > 1:
        is_root = len(level) == 2
        next_level = []
        for left, right in zip(level[0::2], level[1::2]):
            product = tape.values[left].unsqueeze(-1) * tape.values[right].unsqueeze(-2)  # (term, rank, m, n)
            product_id = tape.add(product.flatten(-2))
            tape.steps.append(("product", (left, right), product_id, None))
            if normalize == "pairwise" and not is_root:
                width = tape.values[product_id].shape[-1]
                normalised, mean, rstd = torch.native_layer_norm(tape.values[product_id], (width,), None, None, LAYER_NORM_EPS)
                normalised_id = tape.add(normalised)
                tape.steps.append(("norm", (product_id,), normalised_id, (tape.add(mean), tape.add(rstd))))
                product_id = normalised_id
            next_level.append(product_id)
        if len(level) % 2 == 1:
            next_level.append(level[-1])  # the odd one out waits for the next level
        level = next_level
    tape.root = level[0]
    root = tape.values[tape.root]
    if tape.root >= tape.n_nodes:
        tape.values[tape.root] = None  # the backward pass never reads the root itself
    return root, tape


def tree_backward(grad_root: torch.Tensor, tape: TreeTape) -> list[torch.Tensor]:
    """Return the gradient of each node from the gradient of the root product (term, rank, product of legs)."""
    grads: dict[int, torch.Tensor] = {tape.root: grad_root}
    for kind, inputs, out, statistics in reversed(tape.steps):
        grad = grads.pop(out)
        if kind == "product":
            left, right = (tape.values[index] for index in inputs)
            rows = left.shape[0] * left.shape[1]
            grad = grad.reshape(rows, left.shape[-1], right.shape[-1])  # (term * rank, m, n)
            _accumulate(grads, inputs[0], torch.bmm(grad, right.reshape(rows, right.shape[-1], 1)).view(left.shape))
            _accumulate(grads, inputs[1], torch.bmm(left.reshape(rows, 1, left.shape[-1]), grad).view(right.shape))
        else:
            product = tape.values[inputs[0]]
            mean, rstd = (tape.values[index] for index in statistics)
            grad_product = torch.ops.aten.native_layer_norm_backward(
                grad.contiguous(), product, (product.shape[-1],), mean, rstd, None, None, [True, False, False]
            )[0]
            _accumulate(grads, inputs[0], grad_product)
    return [grads[index] for index in range(tape.n_nodes)]


def _accumulate(grads: dict[int, torch.Tensor], index: int, grad: torch.Tensor) -> None:
    grads[index] = grad if index not in grads else grads[index] + grad
