"""The benchmarks write their figures to $TMPDIR unless --save: the tracked results in
benchmarks/results/ are the recorded figures, replaced only on purpose."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_harness", BENCHMARKS / "harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_result_goes_to_tmpdir_without_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = _harness()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    said = harness.record("x", {"figure": 1}, False)
    scratch = tmp_path / "tmp" / "ingest-x.json"
    assert said == f"written to {scratch} (--save: to benchmarks/results/)"
    assert json.loads(scratch.read_text())["figure"] == 1
    assert not (BENCHMARKS / "results" / "x.json").exists()


@pytest.mark.parametrize("script", ["reference.py", "scaleout.py", "sources.py"])
def test_each_benchmark_writes_through_record_and_has_save(script: str) -> None:
    tree = ast.parse((BENCHMARKS / script).read_text())
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    flags = {
        arg.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "add_argument"
        for arg in node.args
        if isinstance(arg, ast.Constant)
    }
    assert "record" in called and "save" not in called  # save() writes the tracked results
    assert "--save" in flags


def test_bare_without_aiofiles_is_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    # Newcomer9: run from the README's venv (no bench extra), bare read through the executor
    # and nothing said so; benchmarks/README.md describes an aiofiles body.
    harness = _harness()
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "aiofiles" else real(name)
    )
    note = harness.bare_reader_note(["bare", "ingest"])
    assert note is not None and "aiofiles is not installed" in note
    assert harness.bare_reader_note(["curl", "ingest"]) is None  # no bare run: nothing to say
