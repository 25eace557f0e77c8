"""The wrapper shared by every adapter: a frozen linear layer plus a routed low-rank update."""

from __future__ import annotations

import torch
from torch import nn

from ..indices import equation
from ..tlora import check_positive

__all__ = ["AdapterLinear", "MissingTaskIdsError"]

# y[b, s, o] = sum_i sum_r x[b, s, i] A[b, i, r] B[b, r, o]
_UPDATE_EQUATION = equation(
    [("batch", "seq", "d_in"), ("batch", "d_in", "rank"), ("batch", "rank", "d_out")],
    ("batch", "seq", "d_out"),
)


class MissingTaskIdsError(RuntimeError):
    """Raised when a routed adapter runs a forward pass without task ids."""


class AdapterLinear(nn.Module):
    """A frozen ``nn.Linear`` plus ``scaling * x A B``, with A and B chosen per example.

    Subclasses build the factors in :meth:`factors`. Task ids for a batch are set with
    :func:`tensorpoly_tn.use_tasks`; a routed adapter that runs without them raises
    :class:`MissingTaskIdsError` rather than silently using task 0.

    Parameters
    ----------
    base_layer
        The linear layer to adapt; its parameters are frozen.
    rank
        Rank of the update (columns of A, rows of B).
    scaling
        Factor on the update; ``None`` means ``1 / rank``.
    """

    #: Whether :meth:`factors` depends on the task ids.
    routed: bool = True
    #: Name of the method in :class:`tensorpoly_tn.TensorPolyConfig`.
    method: str = ""

    def __init__(self, base_layer: nn.Linear, rank: int, scaling: float | None = None) -> None:
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"base_layer must be a torch.nn.Linear, got {type(base_layer).__name__}")
        check_positive("rank", rank)
        self.base_layer = base_layer
        for parameter in self.base_layer.parameters():
            parameter.requires_grad_(False)
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features
        self.rank = rank
        self.scaling = 1.0 / rank if scaling is None else float(scaling)
        self.task_ids: torch.Tensor | None = None

    @property
    def weight(self) -> torch.Tensor:
        """The frozen base weight (d_out, d_in); model code such as T5's reads its dtype."""
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    def factors(self, task_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the routed factors A (batch, d_in, rank) and B (batch, rank, d_out).

        ``task_ids`` has shape (batch,). Unrouted adapters accept ``None`` and return a batch of one.
        """
        raise NotImplementedError

    def update(self, inputs: torch.Tensor, task_ids: torch.Tensor | None) -> torch.Tensor:
        """Return the unscaled update ``x A B`` (batch, seq, d_out) of ``inputs`` (batch, seq, d_in).

        This default materialises the factors with :meth:`factors` and applies them with two
        ``bmm``; layers with a tensor network of their own override it to run that network
        through :mod:`tensorpoly_tn.planner`.
        """
        a, b = self.factors(task_ids)
        a, b = a.to(inputs.dtype), b.to(inputs.dtype)
        if a.shape[0] == 1 and inputs.shape[0] != 1:
            a = a.expand(inputs.shape[0], -1, -1)  # (batch, d_in, rank)
            b = b.expand(inputs.shape[0], -1, -1)  # (batch, rank, d_out)
        return torch.bmm(torch.bmm(inputs, a), b)  # (batch, seq, d_out), equal to _UPDATE_EQUATION

    def _task_ids_for(self, batch: int) -> torch.Tensor | None:
        if not self.routed:
            return None
        if self.task_ids is None:
            raise MissingTaskIdsError(
                f"{type(self).__name__} needs task ids for its routing; run the model inside "
                "`with tensorpoly_tn.use_tasks(model, task_ids):`"
            )
        task_ids = self.task_ids
        if task_ids.shape[0] == 1 and batch != 1:
            return task_ids.expand(batch)
        # generate() with beams or num_return_sequences repeats each row n times in a row
        # (repeat_interleave) after the encoder; the ids follow the same way.
        if task_ids.shape[0] != batch and task_ids.shape[0] > 0 and batch % task_ids.shape[0] == 0:
            return task_ids.repeat_interleave(batch // task_ids.shape[0])
        if task_ids.shape[0] != batch:
            raise ValueError(
                f"use_tasks was given {task_ids.shape[0]} task ids but the input batch has {batch} rows; "
                "pass one task id per row, a single id for the whole batch, or ids whose count divides "
                "the batch (each id then covers that many consecutive rows)"
            )
        return task_ids

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the base layer and the routed update.

        Parameters
        ----------
        x
            Shape (batch, seq, d_in) or (batch, d_in).

        Returns
        -------
        torch.Tensor
            Same leading shape as ``x`` with last dimension d_out.
        """
        result = self.base_layer(x)
        squeeze = x.dim() == 2
        inputs = x.unsqueeze(1) if squeeze else x  # (batch, seq, d_in)
        if inputs.dim() != 3:
            raise ValueError(f"input must have shape (batch, seq, d_in) or (batch, d_in), got {tuple(x.shape)}")
        task_ids = self._task_ids_for(inputs.shape[0])
        update = self.update(inputs, None if task_ids is None else task_ids.to(inputs.device))
        if squeeze:
            update = update.squeeze(1)
        return torch.add(result, update, alpha=self.scaling)  # result + scaling * update in one operation

    def extra_repr(self) -> str:
        return f"method={self.method!r}, in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"
