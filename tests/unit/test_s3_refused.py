"""s3:// sources without boto3 are refused by `validate` as by `run`, before a run starts.

A new user without the s3 extra got "2 ok", exit 0 from `validate`, while `run`
said "starting novita upload", then refused with exit 2 and a stray `path:`
before its line (newcomer16).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ingest.cli import exits
from ingest.cli.main import main


def test_s3_sources_without_boto3_are_refused_by_validate_and_before_a_run_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # not installed: import and find_spec fail
    manifest = tmp_path / "urls.txt"
    manifest.write_text("s3://bucket/a.png\ns3://bucket/b.png\n")
    later = tmp_path / "later.txt"  # validate checks every entry, not only the first
    later.write_text("https://example.com/a.png\ns3://bucket/b.png\n")
    upper = tmp_path / "upper.txt"  # the manifest takes the scheme in any case, as the fetch
    upper.write_text("S3://bucket/a.png\n")
    journal = tmp_path / "m.journal"
    runs = [["run", "--sim"], ["run", "--dry-run"], ["validate"], ["validate", "--json"]]
    others = [(["validate"], later), (["validate"], upper), (["run", "--sim"], upper)]
    for command, source in [*((c, manifest) for c in runs), *others]:
        extra = ["--journal", str(journal)] if command[0] == "run" else []
        assert main([*command, str(source), "--provider", "novita", *extra]) == exits.EXIT_USAGE, (
            command
        )
        captured = capsys.readouterr()
        assert captured.err.splitlines() == [
            "ingest: error: s3:// sources need boto3: pip install '.[s3]' in ingest's checkout"
        ], command
        assert "ok" not in captured.out and not journal.exists(), command


def test_an_s3_source_past_the_first_entry_without_boto3_stops_the_run_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run looks at its first entry only before it starts (the README says so); one
    found later stops it there with the same one line, exit 2, and a journal a resume reads."""
    from PIL import Image

    from ingest.journal.report import status

    monkeypatch.setitem(sys.modules, "boto3", None)
    for name in ("a", "b"):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{name}.png")
    manifest = tmp_path / "mixed.txt"
    manifest.write_text("a.png\nb.png\ns3://bucket/c.png\n")
    journal = tmp_path / "m.journal"
    assert main(["run", "--sim", str(manifest), "--provider", "novita",
                 "--journal", str(journal)]) == exits.EXIT_USAGE  # fmt: skip
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        "ingest: error: s3:// sources need boto3: pip install '.[s3]' in ingest's checkout"
    )
    assert "Traceback" not in err
    report = status(journal)  # read as `ingest status` does: consistent, nothing failed
    assert report.total == 3 and report.failed == report.rejected == 0
    assert report.done + report.in_flight + report.not_started == 3
