"""TensorNetwork: equations, sizes, costs, drawing and the errors for bad networks."""

import math

import matplotlib
import pytest

from tensorpoly_tn.indices import assign_letters, equation
from tensorpoly_tn.network import TensorNetwork

matplotlib.use("Agg")


def _lora():
    net = TensorNetwork()
    net.add("x", ("batch", "seq", "d_in"), (2, 3, 10), role="input")
    return net.add("A", ("d_in", "rank"), (10, 4)).add("B", ("rank", "d_out"), (4, 7))


def test_equation_uses_named_letters():
    assert _lora().equation() == "bsi,ir,ro->bso"


def test_default_output_is_open_indices():
    assert _lora().default_output() == ("batch", "seq", "d_out")


def test_new_index_names_get_free_letters():
    letters = assign_letters(["batch", "leg_0", "d_in", "leg_1"])
    assert letters["batch"] == "b"
    assert len(set(letters.values())) == 4
    assert equation([("batch", "leg_0")], ("leg_0",), letters) == "b" + letters["leg_0"] + "->" + letters["leg_0"]


def test_cost_reports_flops_and_path():
    cost = _lora().cost()
    assert cost.flops < cost.naive_flops
    assert cost.largest_intermediate == 2 * 3 * 7
    assert len(cost.path) == 2


def test_index_with_two_sizes_names_both_tensors():
    net = _lora()
    with pytest.raises(ValueError, match=r"index 'rank' has size 5 on 'C' but size 4 on tensor 'A'"):
        net.add("C", ("rank",), (5,))


def test_output_index_on_no_tensor():
    with pytest.raises(ValueError, match=r"output index 'task' is on no tensor"):
        _lora().check(("batch", "task"))


def test_index_on_three_places_needs_hyper():
    net = _lora().add("C", ("rank", "skill"), (4, 2))
    with pytest.raises(ValueError, match=r"index 'rank' appears on 3 places \(A, B, C\).*hyper_indices"):
        net.check(("batch", "seq", "d_out", "skill"))


def test_hyper_index_is_allowed():
    net = TensorNetwork(hyper_indices=("rank",))
    net.add("A", ("d_in", "rank"), (3, 2)).add("B", ("rank", "d_out"), (2, 4)).add("C", ("rank",), (2,))
    assert net.equation(("d_in", "d_out")) == "ir,ro,r->io"


def test_empty_dimension_is_rejected():
    with pytest.raises(ValueError, match=r"tensor 'x' has size 0 on index 'seq'; every dimension must be at least 1"):
        TensorNetwork().add("x", ("batch", "seq"), (2, 0))


def test_repeated_index_on_one_tensor():
    with pytest.raises(ValueError, match=r"index 'd_in' appears twice on tensor 'A'"):
        TensorNetwork().add("A", ("d_in", "d_in"), (3, 3))


def test_shape_length_must_match_indices():
    with pytest.raises(ValueError, match=r"tensor 'A' has 2 indices .* but a shape of 1 sizes"):
        TensorNetwork().add("A", ("d_in", "rank"), (3,))


def test_duplicate_name_and_bad_role():
    net = _lora()
    with pytest.raises(ValueError, match=r"tensor name 'A' is already in the network"):
        net.add("A", ("rank",), (4,))
    with pytest.raises(ValueError, match=r"role of tensor 'C' must be one of .*got 'weights'"):
        net.add("C", ("rank",), (4,), role="weights")


def test_empty_network_is_rejected():
    with pytest.raises(ValueError, match=r"the network has no tensors"):
        TensorNetwork().equation()


def test_fuse_checks_part_sizes():
    net = TensorNetwork().add("a_0", ("leg_0",), (3,)).add("a_1", ("leg_1",), (4,))
    with pytest.raises(ValueError, match=r"fused index 'd_in' has size 13; .* \[3, 4\] = 12"):
        net.fuse("d_in", ("leg_0", "leg_1"), 13)
    with pytest.raises(ValueError, match=r"parts \['leg_9'\] are on no tensor"):
        net.fuse("d_in", ("leg_0", "leg_9"), 5)
    net.fuse("d_in", ("leg_0", "leg_1"), 10)
    assert net.expand(("batch", "d_in")) == ("batch", "leg_0", "leg_1")


def test_draw_returns_figure_and_axes():
    import matplotlib.pyplot as plt

    net = TensorNetwork(hyper_indices=("rank",))
    net.add("x", ("batch", "d_in"), (2, 5), role="input").add("A", ("d_in", "rank"), (5, 2))
    net.add("B", ("rank", "d_out"), (2, 3)).add("s", ("rank",), (2,), role="routing")
    fig, ax = plt.subplots()
    returned_fig, returned_ax = net.draw(ax=ax)
    assert returned_ax is ax and returned_fig is fig
    labels = {text.get_text() for text in ax.texts}
    assert {"x", "A", "B", "s", "d_in=5", "rank=2", "d_out=3", "batch=2"} <= labels
    plt.close(fig)


def test_draw_fans_out_open_legs_of_one_node():
    import matplotlib.pyplot as plt

    net = TensorNetwork()
    net.add("x", ("batch", "seq", "d_in"), (2, 3, 5), role="input").add("A", ("d_in", "d_out"), (5, 4))
    fig, ax = net.draw(output=("batch", "seq", "d_out"))
    ends = {text.get_text(): text.xy for text in ax.texts}
    batch_end, seq_end = ends["batch=2"], ends["seq=3"]
    assert math.dist(batch_end, seq_end) > 0.5  # 0.4 rad apart at radius 1.6
    assert math.hypot(*batch_end) == pytest.approx(1.6)
    plt.close(fig)
