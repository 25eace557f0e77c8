"""The documentation site builds with warnings as errors, and its generated pages are current."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
    reason="the docs extra is not installed: pip install -e '.[docs]'",
)


def _load_gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "docs" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mkdocs_build_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or "mkdocs"
    completed = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert (tmp_path / "site" / "api" / "index.html").is_file()
    assert "TensorPolyConfig" in (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")


def test_benchmark_page_matches_results():
    gen_docs = _load_gen_docs()
    if not gen_docs.RESULTS_JSON.is_file():
        pytest.skip(f"{gen_docs.RESULTS_JSON} is absent; run tensorpoly-tn demo and docs/gen_docs.py")
    results = json.loads(gen_docs.RESULTS_JSON.read_text(encoding="utf-8"))
    expected = gen_docs.benchmark_page(results)
    committed = gen_docs.BENCHMARK_MD.read_text(encoding="utf-8")
    assert committed == expected, "docs/benchmark.md is stale; run .venv/bin/python docs/gen_docs.py"
