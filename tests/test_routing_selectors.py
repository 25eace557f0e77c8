"""Router selectors, splits, task rows and router-only tuning."""

import pickle

import pytest
import torch

from tensorpoly_tn.routing import SELECTORS, Router, get_selector, register_selector


def _router(selector="sigmoid", n_tasks=3, n_experts=4, n_splits=1, seed=0):
    torch.manual_seed(seed)
    router = Router(n_tasks, n_experts, selector=selector, n_splits=n_splits)
    with torch.no_grad():
        router.logits.normal_()
    return router


def test_sigmoid_weights_are_normalised_sigmoid():
    router = _router(n_splits=2)
    weights = router.weights(torch.tensor([2, 0]))
    assert weights.shape == (2, 2, 4)
    expected = torch.sigmoid(router.logits[[2, 0]].view(2, 2, 4))
    expected = expected / expected.sum(-1, keepdim=True)
    torch.testing.assert_close(weights, expected)


def test_logit_layout_is_split_major():
    router = _router(n_splits=3, n_experts=2)
    with torch.no_grad():
        router.logits.zero_()
        router.logits[1, 2 * 2 + 1] = 5.0  # split 2, expert 1 of task 1
    weights = router.weights(torch.tensor([1]))[0]  # (split, expert)
    assert weights[2, 1] > weights[2, 0]
    torch.testing.assert_close(weights[:2], torch.full((2, 2), 0.5))


def test_forward_flattens_to_logit_layout():
    router = _router(n_splits=2)
    ids = torch.tensor([1, 1, 0])
    torch.testing.assert_close(router(ids), router.weights(ids).flatten(1))
    torch.testing.assert_close(router.allocation()[ids], router(ids))


def test_relaxed_bernoulli_samples_only_in_training():
    router = _router("relaxed-bernoulli")
    ids = torch.tensor([0, 1])
    router.eval()
    torch.testing.assert_close(router.weights(ids), _router("sigmoid").weights(ids))
    router.train()
    first, second = router.weights(ids), router.weights(ids)
    assert not torch.equal(first, second)
    torch.testing.assert_close(first.sum(-1), torch.ones(2, 1))
    first.sum().backward()
    assert router.logits.grad is not None


def test_straight_through_is_hard_forward_sigmoid_backward():
    router = _router("straight-through")
    ids = torch.tensor([0])
    weights = router.weights(ids)
    hard = (torch.sigmoid(router.logits[0]) > 0.5).float()
    torch.testing.assert_close(weights[0, 0], hard / hard.sum())
    (weights[0, 0] * torch.arange(4.0)).sum().backward()
    assert router.logits.grad[0].abs().sum() > 0


def test_uniform_selector_averages_and_freezes_logits():
    router = _router("uniform")
    torch.testing.assert_close(router.weights(torch.tensor([0, 2])), torch.full((2, 1, 4), 0.25))
    assert not router.logits.requires_grad


def test_private_selector_is_one_hot_per_task():
    router = _router("private", n_tasks=3, n_experts=3, n_splits=2)
    weights = router.weights(torch.tensor([2, 0]))
    expected = torch.zeros(2, 2, 3)
    expected[0, :, 2] = 1.0
    expected[1, :, 0] = 1.0
    torch.testing.assert_close(weights, expected)


def test_private_selector_needs_one_expert_per_task():
    with pytest.raises(ValueError, match="n_experts must equal n_tasks; got n_experts=4 and n_tasks=3"):
        Router(3, 4, selector="private")


def test_unknown_selector_lists_known():
    with pytest.raises(ValueError, match=r"unknown selector 'softmax': selector must be one of the registered selectors \["):
        Router(2, 2, selector="softmax")
    with pytest.raises(ValueError, match="unknown selector"):
        get_selector("softmax")


def test_duplicate_selector_rejected():
    with pytest.raises(ValueError, match="selector 'sigmoid' is already registered"):
        register_selector("sigmoid", lambda logits, task_ids, training: logits)
    assert set(SELECTORS) >= {"sigmoid", "relaxed-bernoulli", "straight-through", "uniform", "private"}


def test_task_id_outside_router_raises():
    with pytest.raises(ValueError, match="task id 3 is outside the router, which has 3 tasks"):
        _router().weights(torch.tensor([3]))


def test_add_tasks_appends_near_uniform_rows():
    router = _router()
    old = router.logits.detach().clone()
    assert router.add_tasks(2) == 3
    assert router.n_tasks == 5
    torch.testing.assert_close(router.logits[:3], old)
    assert router.logits[3:].abs().max() <= 1e-3


def test_tune_only_changes_one_row_under_weight_decay():
    router = _router()
    router.tune_only(1)
    before = router.logits.detach().clone()
    trainable = [p for p in router.parameters() if p.requires_grad]
    assert trainable == [router.tuned_logits]
    optimizer = torch.optim.AdamW(trainable, lr=0.1, weight_decay=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        (router.weights(torch.tensor([0, 1, 2]))[:, 0, 0]).sum().backward()
        optimizer.step()
    weights_of_task_1 = router.weights(torch.tensor([1]))
    router.finish_tuning()
    assert router.tuned_logits is None
    torch.testing.assert_close(router.logits[[0, 2]], before[[0, 2]], rtol=0, atol=0)
    assert not torch.equal(router.logits[1], before[1])
    torch.testing.assert_close(router.weights(torch.tensor([1])), weights_of_task_1)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="n_splits must be an integer >= 1, got 0"):
        Router(2, 2, n_splits=0)
    with pytest.raises(ValueError, match="count must be an integer >= 1, got 0"):
        _router().add_tasks(0)


def test_straight_through_all_off_gives_zeros():
    router = _router("straight-through")
    with torch.no_grad():
        router.logits.fill_(-3.0)  # every sigmoid rounds to 0
    weights = router.weights(torch.tensor([0]))
    assert torch.isfinite(weights).all()
    assert torch.equal(weights, torch.zeros_like(weights))


def test_checked_ids_changed_in_place_are_checked_again():
    router = _router()
    ids = torch.tensor([0, 2])
    router.weights(ids)
    ids[1] = 5
    with pytest.raises(ValueError, match=r"task id 5 is outside the router, which has 3 tasks"):
        router.weights(ids)


def test_router_pickles_after_a_check():
    router = _router()
    router.weights(torch.tensor([1]))
    copied = pickle.loads(pickle.dumps(router))
    torch.testing.assert_close(copied.weights(torch.tensor([1])), router.weights(torch.tensor([1])))
