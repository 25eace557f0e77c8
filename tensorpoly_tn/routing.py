r"""Per-task routers: a task x expert allocation matrix turned into mixing weights.

The router stores one row of logits per task, ``n_splits * n_experts`` wide, read as
(split, expert) with the split index most significant (the layout of PEFT's ``poly`` router). A
selector turns each task's logits into weights over the experts, separately for every split. The
default selector, as in Polytropon and TensorPoly, takes the sigmoid of the logits and normalises
each split's weights to sum to one:

.. math::

    w_{t h k} = \frac{\sigma(z_{t h k})}{\sum_{k'} \sigma(z_{t h k'})}

The experts are the n_terms of the TensorPoly tensor (TensorPoly-I), the skills of Poly and MHR,
or the terms of one order (TensorPoly-II, where the splits are the orders).

Selectors (see :data:`SELECTORS`, extended with :func:`register_selector`):

``"sigmoid"``
    Sigmoid, then normalised as above, in training and evaluation.
``"relaxed-bernoulli"``
    In training, a relaxed Bernoulli sample (temperature 1) of the logits replaces the sigmoid,
    then normalised; in evaluation as ``"sigmoid"``. This is Polytropon's training-time router.
``"straight-through"``
    The sigmoid rounded to 0 or 1 in the forward pass, with the sigmoid's gradient in the
    backward pass, then normalised.
``"uniform"``
    Every expert weighs ``1 / n_experts`` (the average of the experts); the logits are frozen.
``"private"``
    Task ``t`` uses expert ``t`` alone (one-hot); needs ``n_experts == n_tasks``; the logits are frozen.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions.relaxed_bernoulli import RelaxedBernoulli

from .tlora import check_positive

__all__ = [
    "Router", "Selector", "SELECTORS", "register_selector", "get_selector", "LOGIT_INIT_RANGE", "logit_dtype",
    "normalized_sigmoid", "normalized_sigmoid_backward",
]

LOGIT_INIT_RANGE = 1e-3

# select(logits (batch, split, expert) in float32 or float64, task_ids (batch,), training) -> weights (batch, split, expert)
SelectFunction = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]


@dataclass(frozen=True)
class Selector:
    """A named rule that turns router logits into mixing weights.

    Attributes
    ----------
    name
        Key in :data:`SELECTORS` and value of ``TensorPolyConfig.selector``.
    select
        ``select(logits, task_ids, training)`` with logits of shape (batch, split, expert),
        task ids of shape (batch,), returning weights of shape (batch, split, expert).
    uses_logits
        ``False`` when the weights ignore the logits; the router then freezes them.
    """

    name: str
    select: SelectFunction
    uses_logits: bool = True


SELECTORS: dict[str, Selector] = {}


def register_selector(name: str, select: SelectFunction, uses_logits: bool = True) -> Selector:
    """Add a selector under ``name``; raise ``ValueError`` if the name is taken."""
    if name in SELECTORS:
        raise ValueError(f"selector {name!r} is already registered; registered selectors are {sorted(SELECTORS)}")
    selector = Selector(name, select, uses_logits)
    SELECTORS[name] = selector
    return selector


def get_selector(name: str) -> Selector:
    """Return the selector registered as ``name``; raise ``ValueError`` listing the known names."""
    try:
        return SELECTORS[name]
    except KeyError:
        raise ValueError(
            f"unknown selector {name!r}: selector must be one of the registered selectors {sorted(SELECTORS)}"
        ) from None


def logit_dtype(weight_dtype: torch.dtype) -> torch.dtype:
    """Return the dtype of a router's logits beside an adapted weight of ``weight_dtype``.

    Routers keep float32 logits beside half-precision and float32 weights, and float64 beside
    float64 weights. A sigmoid normalised over a few experts loses most of its resolution in
    bfloat16, and the logits are a few numbers per task, so full precision costs nothing.
    """
    return torch.float64 if weight_dtype == torch.float64 else torch.float32


def _normalize(scores: torch.Tensor) -> torch.Tensor:
    # The clamp only acts on a split whose experts are all switched off (straight-through), which
    # then gets zero weights rather than NaN. Other splits are divided by their exact sum.
    total = scores.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)
    return scores / total  # (batch, split, expert)


def normalized_sigmoid(rows: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Return the default selector's weights for ``rows`` (..., expert) without recording autograd.

    The second value is what :func:`normalized_sigmoid_backward` needs. Fused kernels use the
    pair to run the router inside their own autograd function.
    """
    scores = torch.sigmoid(rows)
    raw_total = scores.sum(dim=-1, keepdim=True)
    total = raw_total.clamp_min(torch.finfo(scores.dtype).tiny)
    weights = scores / total  # (..., expert)
    return weights, (scores, total, raw_total >= torch.finfo(scores.dtype).tiny, weights)


def normalized_sigmoid_backward(grad_weights: torch.Tensor, saved: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Return the gradient of the rows given to :func:`normalized_sigmoid` from that of its weights.

    With ``s = sigmoid(z)``, ``T = max(sum_k s_k, tiny)`` and ``w = s / T``:
    ``dz = (dw - [sum_k s_k >= tiny] sum_k dw_k w_k) / T * s (1 - s)``.
    """
    scores, total, unclamped, weights = saved
    inner = (grad_weights * weights).sum(dim=-1, keepdim=True) * unclamped
    return (grad_weights - inner) / total * scores * (1.0 - scores)


def _select_sigmoid(logits: torch.Tensor, task_ids: torch.Tensor, training: bool) -> torch.Tensor:
    return _normalize(torch.sigmoid(logits))


def _select_relaxed_bernoulli(logits: torch.Tensor, task_ids: torch.Tensor, training: bool) -> torch.Tensor:
    if not training:
        return _select_sigmoid(logits, task_ids, training)
    return _normalize(RelaxedBernoulli(temperature=torch.tensor(1.0, device=logits.device), logits=logits).rsample())


def _select_straight_through(logits: torch.Tensor, task_ids: torch.Tensor, training: bool) -> torch.Tensor:
    probabilities = torch.sigmoid(logits)
    hard = probabilities + (torch.round(probabilities) - probabilities).detach()  # forward: 0/1, backward: sigmoid
    return _normalize(hard)


def _select_uniform(logits: torch.Tensor, task_ids: torch.Tensor, training: bool) -> torch.Tensor:
    return torch.full_like(logits, 1.0 / logits.shape[-1])


def _select_private(logits: torch.Tensor, task_ids: torch.Tensor, training: bool) -> torch.Tensor:
    n_experts = logits.shape[-1]
    one_hot = F.one_hot(task_ids, n_experts).to(logits.dtype)  # (batch, expert)
    return one_hot.unsqueeze(1).expand_as(logits)  # (batch, split, expert)


register_selector("sigmoid", _select_sigmoid)
register_selector("relaxed-bernoulli", _select_relaxed_bernoulli)
register_selector("straight-through", _select_straight_through)
register_selector("uniform", _select_uniform, uses_logits=False)
register_selector("private", _select_private, uses_logits=False)


class Router(nn.Module):
    """Task x (split, expert) allocation logits and the selector that turns them into weights.

    Parameters
    ----------
    n_tasks
        Number of task rows.
    n_experts
        Number of experts each split of a row weights.
    selector
        Name of a registered selector, see :data:`SELECTORS`.
    n_splits
        Number of independently routed splits (MHR heads, or the orders of TensorPoly-II).

    Attributes
    ----------
    logits
        Parameter of shape (n_tasks, n_splits * n_experts), drawn from
        ``U(-LOGIT_INIT_RANGE, LOGIT_INIT_RANGE)`` so that every task starts near uniform weights.
    tuned_logits
        ``None``, or a parameter of shape (n_splits * n_experts,) that replaces row
        ``tuned_task`` of ``logits`` while :meth:`tune_only` is in effect.
    """

    def __init__(self, n_tasks: int, n_experts: int, selector: str = "sigmoid", n_splits: int = 1) -> None:
        super().__init__()
        check_positive("n_tasks", n_tasks)
        check_positive("n_experts", n_experts)
        check_positive("n_splits", n_splits)
        self.selector = get_selector(selector).name
        if self.selector == "private" and n_experts != n_tasks:
            raise ValueError(
                f"the 'private' selector gives each task its own expert, so n_experts must equal n_tasks; "
                f"got n_experts={n_experts} and n_tasks={n_tasks}"
            )
        self._n_experts = n_experts
        self._n_splits = n_splits
        logits = torch.empty(n_tasks, n_splits * n_experts).uniform_(-LOGIT_INIT_RANGE, LOGIT_INIT_RANGE)
        self.logits = nn.Parameter(logits, requires_grad=get_selector(selector).uses_logits)
        self.register_parameter("tuned_logits", None)
        self.tuned_task: int | None = None

    @property
    def n_tasks(self) -> int:
        return self.logits.shape[0]

    @property
    def n_experts(self) -> int:
        return self._n_experts

    @property
    def n_splits(self) -> int:
        return self._n_splits

    def check_task_ids(self, task_ids: torch.Tensor, bounds: tuple[int, int] | None = None) -> None:
        """Raise ``ValueError`` when a task id is outside ``[0, n_tasks)``.

        ``bounds`` may give the smallest and largest id, read once by a caller that checks the
        same ids against many routers. The last tensor that passed is remembered (by a weak
        reference and its version counter), so the ids that :func:`~tensorpoly_tn.use_tasks`
        checked are not read back again by every layer's forward pass, which would cost a
        device synchronisation per layer.
        """
        passed = self.__dict__.get("_passed_ids")
        if passed is not None and passed[0]() is task_ids and passed[1] == (task_ids._version, self.n_tasks):
            return
        if task_ids.numel() > 0:
            low, high = bounds if bounds is not None else (int(task_ids.min()), int(task_ids.max()))
            if low < 0 or high >= self.n_tasks:
                bad = low if low < 0 else high
                raise ValueError(
                    f"task id {bad} is outside the router, which has {self.n_tasks} tasks "
                    f"(valid ids are 0 to {self.n_tasks - 1})"
                )
        self.__dict__["_passed_ids"] = (weakref.ref(task_ids), (task_ids._version, self.n_tasks))

    def __getstate__(self) -> dict:
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state.pop("_passed_ids", None)  # a weak reference cannot be pickled or copied
        return state

    def effective_logits(self) -> torch.Tensor:
        """Return the logits in use, shape (task, split * expert), with the tuned row substituted."""
        if self.tuned_logits is None:
            return self.logits
        index = torch.tensor([self.tuned_task], device=self.logits.device)
        return self.logits.index_copy(0, index, self.tuned_logits.unsqueeze(0).to(self.logits.dtype))

    def sigmoid_logits(self, task_ids: torch.Tensor) -> torch.Tensor | None:
        """Return the logits in use (task, split * expert) when the weights are their normalised sigmoid.

        That is the ``"sigmoid"`` selector, and ``"relaxed-bernoulli"`` in evaluation mode. A fused
        kernel can then compute the weights itself (:func:`normalized_sigmoid`). Other selectors
        return ``None``. The task ids (batch,) are checked as in :meth:`weights`.
        """
        if self.selector != "sigmoid" and not (self.selector == "relaxed-bernoulli" and not self.training):
            return None
        self.check_task_ids(task_ids)
        return self.effective_logits()

    def weights(self, task_ids: torch.Tensor) -> torch.Tensor:
        """Return the mixing weights of each example, shape (batch, split, expert).

        Parameters
        ----------
        task_ids
            Integer tensor of shape (batch,).
        """
        self.check_task_ids(task_ids)
        task_ids = task_ids.to(self.logits.device)
        logits = self.effective_logits()
        # Half-precision logits are promoted to float32 so that the sigmoid and the sum stay accurate.
        rows = logits[task_ids].to(torch.promote_types(logits.dtype, torch.float32))  # (batch, split * expert)
        rows = rows.view(-1, self.n_splits, self.n_experts)  # (batch, split, expert)
        return get_selector(self.selector).select(rows, task_ids, self.training)

    def allocation(self) -> torch.Tensor:
        """Return the weights of every task, shape (task, split * expert); split-major, as the logits."""
        task_ids = torch.arange(self.n_tasks, device=self.logits.device)
        return self.weights(task_ids).flatten(1)

    def forward(self, task_ids: torch.Tensor) -> torch.Tensor:
        """Return the weights of each example in the logits' layout, shape (batch, split * expert).

        With one split this is (batch, expert). Parameters as in :meth:`weights`.
        """
        return self.weights(task_ids).flatten(1)

    def add_tasks(self, count: int = 1) -> int:
        """Append ``count`` task rows drawn like the initial logits; return the first new task id."""
        check_positive("count", count)
        self.finish_tuning()
        first = self.n_tasks
        new_rows = torch.empty(count, self.logits.shape[1], dtype=self.logits.dtype, device=self.logits.device)
        new_rows.uniform_(-LOGIT_INIT_RANGE, LOGIT_INIT_RANGE)
        self.logits = nn.Parameter(torch.cat([self.logits.detach(), new_rows]), requires_grad=self.logits.requires_grad)
        return first

    def tune_only(self, task: int) -> None:
        """Freeze every row of the logits except the row of ``task``, which becomes ``tuned_logits``.

        Row-wise freezing by a separate parameter, rather than by masking gradients, keeps the
        other rows unchanged also under optimisers with weight decay. :meth:`finish_tuning`
        writes the row back.
        """
        self.check_task_ids(torch.tensor([task]))
        self.finish_tuning()
        self.logits.requires_grad_(False)
        self.tuned_task = int(task)
        self.tuned_logits = nn.Parameter(self.logits.detach()[task].clone())

    def finish_tuning(self) -> None:
        """Write ``tuned_logits`` back into its row of ``logits`` and drop it; no-op when not tuning."""
        if self.tuned_logits is None:
            return
        with torch.no_grad():
            self.logits[self.tuned_task] = self.tuned_logits.to(self.logits.dtype)
        self.tuned_logits = None
        self.tuned_task = None

    def extra_repr(self) -> str:
        return f"n_tasks={self.n_tasks}, n_splits={self.n_splits}, n_experts={self.n_experts}, selector={self.selector!r}"
