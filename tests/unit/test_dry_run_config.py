"""A dry run checks the configuration the run checks, and fails the same way.

A new user's `ingest run m.jsonl --provider scenario --dry-run` (no
`--model-id`) exited 0, and the real run then exited 2. The codes a dry run
gives are in `ingest.cli.exits.DRY_RUN` (and `run --help`, and the README).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.cli.main import main
from tests.images import make_dataset, write_jsonl_manifest


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    paths = make_dataset(tmp_path / "images", 3, min_size=512, max_size=2048)
    return write_jsonl_manifest(paths, tmp_path / "m.jsonl")


def test_a_dry_run_without_a_required_setting_fails_as_the_run_does(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["run", str(manifest), "--provider", "scenario", "--sim", "--quiet"]
    assert main(command) == 2
    refused = capsys.readouterr().err
    assert "providers.scenario.model_id: required" in refused
    assert main([*command, "--dry-run"]) == 2
    assert capsys.readouterr().err == refused  # the same one line
    assert not manifest.with_name("m.jsonl.scenario.journal").exists()


def test_a_dry_run_takes_what_the_journal_bound_as_the_run_does(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["run", str(manifest), "--provider", "scenario", "--sim", "--quiet"]
    assert main([*command, "--model-id", "model_demo"]) == 0
    capsys.readouterr()
    # The journal names the model: a resume, real or dry, needs no --model-id.
    assert main([*command, "--dry-run"]) == 0
    assert "would upload 0 files" in capsys.readouterr().err
    assert main(command) == 0
