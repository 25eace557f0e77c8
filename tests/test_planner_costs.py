"""The planner's cost model and execution layout: cost terms, the ranking they give, and bmm-ready steps."""

import pytest
import torch

from tensorpoly_tn.network import TensorNetwork
from tensorpoly_tn.planner import plan
from tensorpoly_tn.planner.adapters import tlora_network
from tensorpoly_tn.planner.backend import blas_ready, pair_step
from tensorpoly_tn.planner.costs import CALL_WEIGHT, MEMORY_WEIGHT
from tensorpoly_tn.tlora import leaf_length

OUTPUT = ("batch", "seq", "d_out")


def _tensorpoly_report(batch, seq, d_in, d_out, rank, n_terms, order):
    net = tlora_network(batch, seq, d_in, d_out, rank, n_terms, order, leaf_length(d_in, order),
                        leaf_length(d_out, order), "pairwise", routed=True)
    return plan(net, OUTPUT).report()


def test_cost_is_flops_memory_and_calls():
    report = _tensorpoly_report(8, 32, 64, 128, 4, 4, 2)
    for stage in report.stages:
        expected = stage.flops + MEMORY_WEIGHT * stage.cost.memory + CALL_WEIGHT * stage.cost.calls
        assert stage.cost.total == pytest.approx(expected)
    assert report.cost == pytest.approx(sum(stage.cost.total for stage in report.stages))
    assert report.cost == min(report.candidate_costs.values())
    assert report.flops == sum(stage.flops for stage in report.stages)


def test_small_shape_factors_runs_as_two_bmm():
    """At the tiny-T5 width, factors wins and its per-token stage is x A^T then (x A^T) B, like bmm."""
    report = _tensorpoly_report(8, 32, 64, 128, 4, 4, 2)
    assert report.strategy == "factors"
    a_stage, b_stage, token_stage = report.stages
    assert a_stage.output == ("batch", "rank", "d_in")
    assert b_stage.output == ("batch", "rank", "d_out")
    assert token_stage.cost.calls == 2
    # x (8, 32, 64) + A (8, 64, 4) + xA (8, 32, 4), then xA + B (8, 4, 128) + y (8, 32, 128)
    assert token_stage.cost.memory == (16384 + 2048 + 1024) + (1024 + 4096 + 32768)


def test_decode_shape_ranks_by_memory_not_flops():
    """One token per example at T5-large width: terms has the fewest FLOPs but moves the unrouted terms.

    terms builds A_k (8, 16, 1024) and B_k (8, 16, 2816) per call, which direct never forms, so the
    cost ranks direct first although the FLOPs rank terms first.
    """
    report = _tensorpoly_report(8, 1, 1024, 2816, 16, 8, 4)
    flops, costs = report.candidates, report.candidate_costs
    assert min(flops, key=flops.get) == "terms"
    assert min(costs, key=costs.get) == "direct"
    assert costs["terms"] > 2 * costs["direct"]
    assert report.strategy == "direct"
    assert "cost" in report.describe()
    assert "elements moved" in report.describe()


def test_padding_counts_as_memory():
    """An input padded to its unfolded size is read and written once more than one that fits exactly."""
    def direct_memory(d_in):
        net = TensorNetwork()
        net.add("x", ("batch", "seq", "d_in"), (4, 16, d_in), role="input")
        net.add("C", ("d_in_0", "d_out"), (8, 4)).add("D", ("d_in_1", "rank"), (12, 3))
        net.fuse("d_in", ("d_in_0", "d_in_1"), d_in)
        return plan(net, ("batch", "seq", "d_out", "rank"), strategy="direct").report().stages[-1].cost.memory

    assert direct_memory(90) - direct_memory(96) == 2 * 4 * 16 * 96


def test_pair_step_skips_no_op_reshapes():
    step = pair_step("bsi,bir->bsr", (8, 32, 64), (8, 64, 4))
    assert (step.left_order, step.left_matrix, step.right_order, step.right_matrix) == (None, None, None, None)
    assert step.product_shape is None
    assert step.output_order is None


def test_pair_step_copies_strided_operand():
    x = torch.randn(3, 5, 7, dtype=torch.float64)
    a = torch.randn(2, 7, 3, dtype=torch.float64).permute(2, 1, 0)  # (3, 7, 2), neither last axis unit-stride
    assert not blas_ready(a)
    result = pair_step("bsi,bir->bsr", (3, 5, 7), (3, 7, 2))(x, a)
    torch.testing.assert_close(result, torch.einsum("bsi,bir->bsr", x, a))
