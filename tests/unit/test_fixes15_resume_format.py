"""A resume given a --format other than the one its journal records is refused up front,
exit 2, in one line naming the journal, both formats and what to do (fixes15). Given `csv`
it was refused for the manifest instead ("no 'path' column in the CSV header"), as if the
run were a new one; given `list`, refused without saying how to resume. A journal that
records no format keeps its note (test_fixes10)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ingest.cli.main import main
from ingest.errors import JournalMismatch
from ingest.journal import peek_header
from ingest.journal.maintenance import check_binding, format_mismatch
from tests.images import make_dataset, write_jsonl_manifest


@pytest.mark.parametrize("given", ["csv", "list"])
def test_a_resume_given_another_format_than_its_journal_records_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    manifest = write_jsonl_manifest(make_dataset(tmp_path / "img", 2), tmp_path / "m.jsonl")
    run = ["run", str(manifest), "--provider", "novita", "--sim", "--quiet"]
    assert main([*run, "--format", "jsonl"]) == 0
    [journal] = tmp_path.glob("*.journal")
    before = journal.read_bytes()
    capsys.readouterr()
    for command in (run, [*run, "--dry-run"], ["retry-failed", str(journal)]):
        assert main([*command, "--format", given]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"ingest: error: journal {journal} was made with format 'jsonl'; this run uses "
            f"format {given!r}: run without --format (or with --format jsonl) to resume it, "
            "or use another --journal (or journal=) to keep them apart"
        ]
    assert journal.read_bytes() == before


def test_the_binding_check_words_a_format_alone_the_same(tmp_path: Path) -> None:
    manifest = write_jsonl_manifest(make_dataset(tmp_path / "img", 1), tmp_path / "m.jsonl")
    run = ["run", str(manifest), "--provider", "novita", "--sim", "--quiet"]
    assert main([*run, "--format", "jsonl"]) == 0
    [journal] = tmp_path.glob("*.journal")
    found = peek_header(journal)
    assert found is not None
    wanted = dataclasses.replace(found, bind={"format": "list"})
    with pytest.raises(JournalMismatch) as refused:
        check_binding(journal, found, wanted, False)
    assert str(refused.value) == str(format_mismatch(journal, "jsonl", "list"))
