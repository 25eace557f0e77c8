"""The planner and methods benchmarks run end to end at toy sizes and print their ratio lines."""

import platform
import re

import pytest

from tensorpoly_tn.bench.allocator import keep_freed_memory
from tensorpoly_tn.cli import main


def test_bench_planner_prints_ratios(capsys):
    code = main(["bench", "planner", "--orders", "2", "--batch", "1", "--seq", "2", "--d-in", "10", "--d-out", "6",
                 "--rank", "2", "--n-terms", "2", "--repeats", "1", "--tiny-orders", "2", "--tiny-seqs", "2",
                 "--default-malloc"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert re.search(r"order 2: hand [\d.]+ ms  planned [\d.]+x  plain [\d.]+x", printed), printed
    assert "warm cache look-up" in printed
    assert re.search(r"planned/bmm [\d.]+x, fused/bmm [\d.]+x", printed), printed


def test_bench_methods_prints_every_method(capsys):
    code = main(["bench", "methods", "--d-model", "32", "--d-ff", "64", "--layers", "1", "--batch", "2",
                 "--source-length", "4", "--target-length", "2", "--rank", "2", "--n-tasks", "2", "--n-skills", "2",
                 "--repeats", "1", "--warmup", "0", "--default-malloc"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    for method in ("lora", "tlora", "poly", "mhr", "tensorpoly-1", "tensorpoly-2", "peft-lora", "peft-poly"):
        assert re.search(rf"^{method} +[\d.]+ +[\d.]+ +[\d.]+$", printed, re.MULTILINE), method
    assert "merged inference" in printed


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are a glibc feature")
def test_keep_freed_memory_applies_on_glibc():
    assert keep_freed_memory() is True
