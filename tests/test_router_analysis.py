import numpy as np
import pytest

from tensorpoly_tn import TensorPolyConfig, apply_adapters
from tensorpoly_tn.experiments.plots import plot_skill_recovery
from tensorpoly_tn.experiments.router_analysis import (
    normalized_mutual_information,
    permutation_accuracy,
    skill_recovery,
    task_allocation,
)
from tensorpoly_tn.models import build_preset_model
from tensorpoly_tn.skills import SkillsBenchmark

SKILLS = SkillsBenchmark().skill_matrix(SkillsBenchmark().train_tasks)  # (11 tasks, 6 skills)


def test_permuted_truth_is_recovered_exactly():
    permutation = [3, 0, 5, 1, 4, 2]
    allocation = SKILLS[:, permutation] + 0.05
    score, matched = permutation_accuracy(allocation, SKILLS)
    assert score == 1.0
    assert [permutation[e] for e in matched] == list(range(6))


def test_nmi_of_truth_is_the_ceiling():
    result = skill_recovery(SKILLS[:, ::-1], SKILLS)
    assert result["nmi"] == pytest.approx(result["max_nmi"])
    assert result["chance_nmi"] < result["nmi"]
    assert result["chance_permutation_accuracy"] < result["permutation_accuracy"]


def test_uniform_allocation_has_no_information():
    assert normalized_mutual_information(np.ones_like(SKILLS), SKILLS) == pytest.approx(0.0, abs=1e-12)


def test_more_experts_than_skills():
    allocation = np.concatenate([SKILLS, np.zeros((len(SKILLS), 2))], axis=1)
    score, matched = permutation_accuracy(allocation, SKILLS)
    assert score == 1.0
    assert matched == list(range(6))


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match=r"same number of tasks, got shapes \(3, 6\) and \(11, 6\)"):
        skill_recovery(np.ones((3, 6)), SKILLS)


def test_task_allocation_of_routed_and_dense_models():
    model = build_preset_model("tiny")
    apply_adapters(model, TensorPolyConfig(method="mhr", n_tasks=5, n_skills=3, n_splits=2, rank=1))
    allocation = task_allocation(model)
    assert allocation.shape == (5, 3)
    np.testing.assert_allclose(allocation.sum(axis=1), 1.0, rtol=1e-5)
    dense = build_preset_model("tiny")
    apply_adapters(dense, TensorPolyConfig(method="lora", rank=2))
    assert task_allocation(dense) is None


def test_plot_skill_recovery_returns_figure():
    names = [f"t{i}" for i in range(len(SKILLS))]
    fig, axes = plot_skill_recovery(SKILLS + 0.1, SKILLS, names, [f"s{i}" for i in range(6)], title="poly")
    assert len(axes) == 2
    assert "perm. acc. 1.00" in axes[1].get_title()
    import matplotlib.pyplot as plt

    plt.close(fig)
