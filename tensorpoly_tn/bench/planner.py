"""Planned TensorPoly-I update against hand-written bmm and plain opt_einsum, at T5-large layer shapes.

For each order, the forward-plus-backward time of three ways to compute ``x A B`` is measured
side by side, interleaved, and the medians are printed as ratios to the hand-written path:

- ``hand``: materialise A and B with :func:`~tensorpoly_tn.tlora.kron_leaves`, mix the terms per
  example, then two ``bmm`` (the reference path of :class:`~tensorpoly_tn.TensorPolyLinear`);
- ``planned``: :func:`tensorpoly_tn.planner.adapters.tlora_update`;
- ``plain``: one :func:`opt_einsum.contract` over the whole network with default settings.

The planner's FLOPs are compared with cotengra's optimised path for the same network when
cotengra is installed, and the warm cache look-up is timed against the planned step.

With ``--shapes tiny`` (or ``both``, the default) it also times a
:class:`~tensorpoly_tn.TensorPolyLinear` of the tiny T5 preset (d_model 64, d_ff 128, rank 4,
n_terms 4, pairwise) at its three layer shapes, forward plus backward: the planned update and
``layer.update`` (which runs the fused training kernel of :mod:`tensorpoly_tn.layers.fused`
when gradients are needed) against ``AdapterLinear.update`` (the factors and two ``bmm``), and
prints the median ratios. At these widths per-call overhead and memory traffic, not FLOPs, set the time.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import opt_einsum
import torch
from torch import nn

from ..layers.base import AdapterLinear
from ..layers.tensorpoly import TensorPolyLinear
from ..planner.adapters import tlora_network, tlora_nodes, tlora_update
from ..planner.plan import Plan
from ..planner.reverse import unfold_axis
from ..tlora import kron_leaves, leaf_length
from .allocator import keep_freed_memory

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=int, nargs="+", default=[2, 4, 8], help="TLoRA orders to measure")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per method and order (after 2 warm-up runs)")
    parser.add_argument("--batch", type=int, default=8, help="batch size")
    parser.add_argument("--seq", type=int, default=256, help="sequence length")
    parser.add_argument("--d-in", type=int, default=1024, help="input width (T5-large d_model)")
    parser.add_argument("--d-out", type=int, default=2816, help="output width (T5-large d_ff)")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--n-terms", type=int, default=8, help="TLoRA terms (latent experts)")
    parser.add_argument("--normalize", choices=["none", "pairwise"], default="pairwise", help="leaf normalisation")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain opt_einsum expression (slow at order 8)")
    parser.add_argument("--shapes", choices=["t5-large", "tiny", "both"], default="both",
                        help="layer shapes to time: T5-large (the options above), the tiny T5 preset, or both")
    parser.add_argument("--tiny-orders", type=int, nargs="+", default=[1, 2, 4], help="TLoRA orders at the tiny shapes")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's allocator as it is; by default it keeps freed memory so that page faults do not skew the ratios")
    parser.add_argument("--tiny-seqs", type=int, nargs="+", default=[32, 256],
                        help="sequence lengths at the tiny shapes (batch is --batch)")


def _hand(x, leaves_a, leaves_b, weights, d_out, normalize):
    terms_a = kron_leaves(leaves_a, x.shape[-1], normalize)  # (term, rank, d_in)
    terms_b = kron_leaves(leaves_b, d_out, normalize)  # (term, rank, d_out)
    a = torch.einsum("bk,kri->bir", weights, terms_a)  # (batch, d_in, rank)
    b = torch.einsum("bk,kro->bro", weights, terms_b)  # (batch, rank, d_out)
    return torch.bmm(torch.bmm(x, a), b)  # (batch, seq, d_out)


def _plain(network, x, leaves_a, leaves_b, weights, d_out, normalize):
    """Contract the whole network as one default opt_einsum expression, input unfolded and output folded."""
    nodes_a, nodes_b = tlora_nodes(leaves_a, normalize), tlora_nodes(leaves_b, normalize)
    sizes = network.sizes
    parts_in, _ = network.fused["d_in"]
    parts_out, _ = network.fused["d_out"]
    unfolded = unfold_axis(x, 2, [sizes[part] for part in parts_in])  # (batch, seq, d_in_0, ...)
    result = opt_einsum.contract(network.equation(("batch", "seq", "d_out")), unfolded, *nodes_a, weights, *nodes_b, weights)
    return result.flatten(2)[..., :d_out]  # (batch, seq, d_out)


def _time(function, tensors) -> float:
    for tensor in tensors:
        tensor.grad = None
    start = time.perf_counter()
    function().square().mean().backward()
    return time.perf_counter() - start


def _interleaved_medians(methods: dict, tensors, repeats: int, calls: int = 1) -> dict[str, float]:
    """Time each method once per round, in turn, for 2 warm-up rounds and ``repeats`` timed ones.

    A sample is the mean of ``calls`` back-to-back calls, for updates too short to time one by one.
    Every other round runs the methods in reverse order, so that neither method always runs
    right after the other (a cache or allocator warmed by the previous call favours the next).
    """
    times: dict[str, list[float]] = {name: [] for name in methods}
    for repeat in range(repeats + 2):
        names = list(methods) if repeat % 2 == 0 else list(reversed(methods))
        for name in names:
            elapsed = sum(_time(methods[name], tensors) for _ in range(calls)) / calls
            if repeat >= 2:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}


def _cotengra_flops(equation: str, shapes) -> float | None:
    try:
        import cotengra
    except ImportError:
        return None
    with warnings.catch_warnings():
        # Without the optional kahypar package cotengra warns and uses its "labels" partitioner instead.
        warnings.filterwarnings("ignore", message=".*kahypar.*")
        optimizer = cotengra.HyperOptimizer(max_repeats=32, progbar=False, minimize="flops")
    _, info = opt_einsum.contract_path(equation, *shapes, shapes=True, optimize=optimizer)
    return float(info.opt_cost)


def _measure_order(args, order: int) -> None:
    torch.manual_seed(order)
    leaf_in, leaf_out = leaf_length(args.d_in, order), leaf_length(args.d_out, order)
    x = torch.randn(args.batch, args.seq, args.d_in)
    leaves_a = torch.randn(order, args.n_terms, args.rank, leaf_in, requires_grad=True)
    leaves_b = torch.randn(order, args.n_terms, args.rank, leaf_out, requires_grad=True)
    weights = torch.rand(args.batch, args.n_terms, requires_grad=True)
    tensors = [leaves_a, leaves_b, weights]
    network = tlora_network(args.batch, args.seq, args.d_in, args.d_out, args.rank, args.n_terms, order,
                            leaf_in, leaf_out, args.normalize, routed=True)
    methods = {
        "hand": lambda: _hand(x, leaves_a, leaves_b, weights, args.d_out, args.normalize),
        "planned": lambda: tlora_update(x, leaves_a, leaves_b, args.d_out, args.normalize, weights),
    }
    if not args.no_plain:
        methods["plain"] = lambda: _plain(network, x, leaves_a, leaves_b, weights, args.d_out, args.normalize)
    medians = _interleaved_medians(methods, tensors, args.repeats)

    contraction = Plan(network, ("batch", "seq", "d_out"))
    report = contraction.report()
    nodes = [x, *tlora_nodes(leaves_a, args.normalize), weights, *tlora_nodes(leaves_b, args.normalize), weights]
    contraction.compiled(nodes)
    lookups = []
    for _ in range(200):
        start = time.perf_counter()
        contraction.compiled(nodes)
        lookups.append(time.perf_counter() - start)
    lookup = statistics.median(lookups)
    cotengra = _cotengra_flops(network.equation(("batch", "seq", "d_out")), network.expanded_shapes())

    ratios = "  ".join(f"{name} {medians[name] / medians['hand']:.2f}x" for name in methods if name != "hand")
    print(f"order {order}: hand {medians['hand'] * 1e3:.1f} ms  {ratios}  (median of {args.repeats})")
    print(f"  planned strategy {report.strategy}, {report.flops:.3e} FLOPs, largest intermediate {report.largest_intermediate:.3e}")
    if cotengra is None:
        print("  cotengra not installed: FLOP comparison skipped")
    else:
        print(f"  cotengra path over the whole network {cotengra:.3e} FLOPs; planned / cotengra {report.flops / cotengra:.3f}")
    print(f"  warm cache look-up {lookup * 1e6:.1f} us = {100 * lookup / medians['planned']:.3f}% of the planned step")


#: (d_in, d_out) of the adapted linears of the tiny T5 preset: attention, feed-forward in and out.
TINY_LAYERS = ((64, 64), (64, 128), (128, 64))


def _measure_tiny(args, order: int, seq: int) -> None:
    """Print the median forward-plus-backward time of the planned and the bmm update at each tiny layer shape."""
    cells = []
    for d_in, d_out in TINY_LAYERS:
        torch.manual_seed(order)
        layer = TensorPolyLinear(nn.Linear(d_in, d_out), rank=4, n_tasks=8, n_terms=4, order=order, normalize="pairwise")
        with torch.no_grad():
            layer.leaves_b.normal_()  # the last leaf starts at zero; make the update non-trivial
        x = torch.randn(args.batch, seq, d_in)
        task_ids = torch.randint(0, 8, (args.batch,))
        parameters = [parameter for parameter in layer.parameters() if parameter.requires_grad]
        methods = {
            "bmm": lambda: AdapterLinear.update(layer, x, task_ids),
            "planned": lambda: tlora_update(x, layer.leaves_a, layer.leaves_b, d_out, "pairwise", layer.router(task_ids)),
            "fused": lambda: layer.update(x, task_ids),
        }
        calls = max(1, min(50, int(0.01 / _time(methods["bmm"], parameters))))  # about 10 ms per sample
        medians = _interleaved_medians(methods, parameters, args.repeats, calls)
        bmm = medians["bmm"]
        cells.append(
            f"{d_in}->{d_out}: bmm {bmm * 1e3:.2f} ms, planned/bmm {medians['planned'] / bmm:.2f}x, "
            f"fused/bmm {medians['fused'] / bmm:.2f}x"
        )
    print(f"tiny order {order}, seq {seq}: " + "  ".join(cells))


def run(args: argparse.Namespace) -> int:
    if not args.default_malloc:
        applied = keep_freed_memory()
        print(f"allocator: glibc keeps freed memory (see tensorpoly_tn.bench.allocator): {'yes' if applied else 'not available'}")
    if args.shapes in ("t5-large", "both"):
        print(
            f"TensorPoly-I update, forward + backward: batch {args.batch}, seq {args.seq}, d_in {args.d_in}, "
            f"d_out {args.d_out}, rank {args.rank}, n_terms {args.n_terms}, normalize {args.normalize}, "
            f"{torch.get_num_threads()} threads"
        )
        for order in args.orders:
            _measure_order(args, order)
    if args.shapes in ("tiny", "both"):
        print(
            f"TensorPoly-I update planned and fused vs AdapterLinear.update (bmm), forward + backward, tiny T5 preset: "
            f"batch {args.batch}, rank 4, n_terms 4, pairwise, median of {args.repeats}, {torch.get_num_threads()} threads"
        )
        for seq in args.tiny_seqs:
            for order in args.tiny_orders:
                _measure_tiny(args, order, seq)
    return 0
