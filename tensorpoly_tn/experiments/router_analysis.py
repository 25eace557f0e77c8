r"""Router analysis: the learned task x expert allocation, compared with the known task x skill matrix.

Two scores measure how well an allocation :math:`A` (task, expert) recovers the generator's 0/1 skill
matrix :math:`Y` (task, skill):

* **Best-permutation accuracy.** Each task's top-:math:`m_t` experts are marked 1, where
  :math:`m_t` is the number of skills of task :math:`t`. Experts are then matched one to one to
  skills (Hungarian matching on the number of agreeing tasks), and the score is the fraction of
  (task, skill) entries of :math:`Y` that the matched expert columns reproduce. Skills left without
  an expert count as all-zero columns.
* **Normalised mutual information** of the soft co-occurrence
  :math:`P(e, s) \propto \sum_t A_{te} Y_{ts}`:
  :math:`\mathrm{NMI} = I(E; S) / \sqrt{H(E) H(S)}`, which is 0 when experts and skills are
  independent. Because a task uses several skills, even :math:`A = Y` scores below 1 (every
  expert co-occurs with the other skills of its tasks), so that ceiling is reported as ``max_nmi``.

Both are reported beside their value for random allocations (the mean over seeded draws), since
neither is 0 by chance.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn

from ..inject import adapter_layers

__all__ = ["task_allocation", "permutation_accuracy", "normalized_mutual_information", "skill_recovery"]

CHANCE_DRAWS = 200


def task_allocation(model: nn.Module) -> np.ndarray | None:
    """Return the routing weights averaged over every routed layer, shape (task, expert).

    Splits (MHR heads, TensorPoly-II orders) are averaged too. The weights are those of eval mode,
    so stochastic selectors give their expected weights. Returns ``None`` when no layer has a router.
    """
    matrices = []
    for layer in adapter_layers(model).values():
        router = getattr(layer, "router", None)
        if router is None:
            continue
        was_training = router.training
        router.eval()
        with torch.no_grad():
            task_ids = torch.arange(router.n_tasks, device=router.logits.device)
            weights = router.weights(task_ids)  # (task, split, expert)
        router.train(was_training)
        matrices.append(weights.mean(dim=1).float().cpu().numpy())  # (task, expert)
    if not matrices:
        return None
    return np.mean(matrices, axis=0)


def _check_pair(allocation: np.ndarray, skills: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    allocation = np.asarray(allocation, dtype=float)
    skills = np.asarray(skills, dtype=float)
    if allocation.ndim != 2 or skills.ndim != 2 or allocation.shape[0] != skills.shape[0]:
        raise ValueError(
            "allocation (task, expert) and skills (task, skill) must be 2-D with the same number of tasks, "
            f"got shapes {allocation.shape} and {skills.shape}"
        )
    return allocation, skills


def _assignment(agreement: np.ndarray) -> list[tuple[int, int]]:
    """Return (expert, skill) pairs maximising the summed agreement, one skill per expert at most."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:  # exhaustive search, fine for the handful of experts of the embedded benchmark
        n_experts, n_skills = agreement.shape
        if n_experts >= n_skills:
            candidates = (list(zip(p, range(n_skills))) for p in itertools.permutations(range(n_experts), n_skills))
        else:
            candidates = (list(zip(range(n_experts), p)) for p in itertools.permutations(range(n_skills), n_experts))
        return max(candidates, key=lambda pairs: sum(agreement[e, s] for e, s in pairs))
    rows, cols = linear_sum_assignment(agreement, maximize=True)
    return list(zip(rows.tolist(), cols.tolist()))


def permutation_accuracy(allocation: np.ndarray, skills: np.ndarray) -> tuple[float, list[int | None]]:
    """Return the best-permutation accuracy and, per skill, the matched expert (or None).

    Parameters
    ----------
    allocation
        Routing weights, shape (task, expert).
    skills
        0/1 skill matrix, shape (task, skill).
    """
    allocation, skills = _check_pair(allocation, skills)
    predicted = np.zeros_like(allocation)
    for row, count in enumerate(skills.sum(axis=1).astype(int)):
        predicted[row, np.argsort(-allocation[row], kind="stable")[:count]] = 1.0
    # agreement[e, s]: tasks on which expert column e equals skill column s.
    agreement = (predicted[:, :, None] == skills[:, None, :]).sum(axis=0)  # (expert, skill)
    matched: list[int | None] = [None] * skills.shape[1]
    for expert, skill in _assignment(agreement):
        matched[skill] = expert
    reconstructed = np.stack(
        [predicted[:, e] if e is not None else np.zeros(len(skills)) for e in matched], axis=1
    )  # (task, skill)
    return float((reconstructed == skills).mean()), matched


def normalized_mutual_information(allocation: np.ndarray, skills: np.ndarray) -> float:
    """Return the NMI of the expert x skill co-occurrence ``allocation.T @ skills`` (see module notes)."""
    allocation, skills = _check_pair(allocation, skills)
    joint = allocation.T @ skills  # (expert, skill)
    total = joint.sum()
    if total <= 0:
        return 0.0
    joint = joint / total
    p_expert, p_skill = joint.sum(axis=1), joint.sum(axis=0)
    nonzero = joint > 0
    mutual = float((joint[nonzero] * np.log(joint[nonzero] / np.outer(p_expert, p_skill)[nonzero])).sum())
    entropy_expert = float(-(p_expert[p_expert > 0] * np.log(p_expert[p_expert > 0])).sum())
    entropy_skill = float(-(p_skill[p_skill > 0] * np.log(p_skill[p_skill > 0])).sum())
    if entropy_expert <= 0 or entropy_skill <= 0:
        return 0.0
    return max(0.0, float(mutual / np.sqrt(entropy_expert * entropy_skill)))


def skill_recovery(allocation: np.ndarray, skills: np.ndarray, seed: int = 0) -> dict:
    """Score ``allocation`` (task, expert) against ``skills`` (task, skill), with chance levels.

    Returns
    -------
    dict
        ``permutation_accuracy``, ``nmi``, ``max_nmi`` (the NMI of ``skills`` itself),
        ``matched_experts`` (per skill), and
        ``chance_permutation_accuracy`` and ``chance_nmi``: the means over random allocations
        of the same shape (uniform weights drawn from ``seed``).
    """
    allocation, skills = _check_pair(allocation, skills)
    score, matched = permutation_accuracy(allocation, skills)
    rng = np.random.default_rng(seed)
    draws = [rng.random(allocation.shape) for _ in range(CHANCE_DRAWS)]
    return {
        "permutation_accuracy": score,
        "nmi": normalized_mutual_information(allocation, skills),
        "max_nmi": normalized_mutual_information(skills, skills),
        "matched_experts": matched,
        "chance_permutation_accuracy": float(np.mean([permutation_accuracy(d, skills)[0] for d in draws])),
        "chance_nmi": float(np.mean([normalized_mutual_information(d, skills) for d in draws])),
    }
