"""`--convert` without Pillow is refused before anything is written (exit 2, no journal).

A new user without the convert extra got the refusal's line and exit 2, but
the run had written its journal first (header, run and end records), while
the README says of exit 2 that nothing was written (newcomer16).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from ingest.cli import exits
from ingest.cli.main import main
from tests.images import make_dataset, write_jsonl_manifest


def test_convert_without_pillow_writes_no_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = make_dataset(tmp_path / "images", 2, min_size=512, max_size=4096)
    manifest = write_jsonl_manifest(paths, tmp_path / "m.jsonl")
    real = importlib.util.find_spec

    def without_pillow(name: str, *args: Any) -> Any:
        return None if name == "PIL" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_pillow)
    journal = tmp_path / "m.journal"
    for command in (["run", "--sim"], ["run", "--dry-run"], ["validate"]):
        args = [*command, str(manifest), "--provider", "novita", "--convert"]
        extra = ["--journal", str(journal)] if command[0] == "run" else []
        assert main(args + extra) == exits.EXIT_USAGE, command
        err = capsys.readouterr().err
        assert err.splitlines()[-1] == (
            "ingest: error: --convert needs Pillow: pip install '.[convert]' in ingest's checkout"
        ), command
        assert not journal.exists() and not list(tmp_path.glob("*.journal*")), command
