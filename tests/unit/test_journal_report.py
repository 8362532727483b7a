"""`status` and `export` as library calls, and the commands that render them.

Also: a path that cannot be a journal (a folder, a path under a file) is one
clear `JournalError` line and exit 2 for every command that reads a journal.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from ingest.cli.main import main
from ingest.errors import Action, JournalError
from ingest.journal import (
    Header,
    Journal,
    JournalStatus,
    export,
    peek_header,
    replay,
    status,
)
from ingest.journal.records import (
    Landed,
    Record,
    acquired,
    completed,
    failed,
    manifest_end,
    rejected,
    run_started,
)


def make_run(tmp_path: Path) -> Path:
    """6 entries: 3 done (one no longer in the manifest), 2 failed, 2 rejected (1 without a key)."""
    manifest = tmp_path / "m.jsonl"
    entries = [
        {"path": "a.png", "id": "a", "caption": "first"},
        {"path": "b.png", "id": "b"},
        {"path": "c.png", "id": "c"},
        {"path": "d.png", "id": "d"},
    ]
    manifest.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in entries))
    journal = tmp_path / "m.jsonl.novita.journal"
    records: list[Record] = [
        run_started(1.0, 1),
        acquired("b", "2"),
        completed("b", "2", 10, 1, url="https://cdn/b"),
        acquired("a", "1"),
        completed("a", "1", 10, 1, extra={"file_id": "f1"}),
        completed("gone", "9", 10, 1),
        failed("c", 3, Action.FAIL_ITEM, "too_large", "over the size limit"),
        failed("d", 4, Action.RETRY, "", "connection reset by the storage host", landed=None),
        rejected(5, "not JSON"),
        rejected(6, "missing file", "e"),
        manifest_end(6),
    ]
    opened, _ = Journal.open(journal, Header(provider="novita", manifest=str(manifest)))
    with opened:
        for rec in records:
            opened.record(rec)
    return journal


def test_status_counts_reasons_and_completeness(tmp_path: Path) -> None:
    journal = make_run(tmp_path)
    info = status(journal)
    assert isinstance(info, JournalStatus)
    assert (info.done, info.failed, info.rejected, info.in_flight) == (3, 2, 2, 0)
    assert (info.total, info.runs, info.complete, info.torn_tail) == (6, 1, False, False)
    assert info.problems == {
        "fail_item/too_large": 1,
        "retry/connection reset by the storage host": 1,
        "rejected/missing file": 1,
    }
    assert info.to_json()["complete"] is False
    assert replay(journal).counts() == {
        key: info.to_json()[key] for key in ("done", "failed", "rejected", "in_flight")
    }


def test_status_command_prints_the_library_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = make_run(tmp_path)
    assert main(["status", str(journal), "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == status(journal).to_json()
    assert main(["status", str(journal)]) == 0
    out = capsys.readouterr().out
    assert "done      3" in out and "fail_item/too_large" in out and "incomplete" in out


def test_export_rows_follow_the_manifest_then_the_journal(tmp_path: Path) -> None:
    journal = make_run(tmp_path)
    rows = list(export(journal))
    assert rows == [
        {"key": "a", "path": str(tmp_path / "a.png"), "remote_id": "1", "caption": "first",
         "file_id": "f1"},
        {"key": "b", "path": str(tmp_path / "b.png"), "remote_id": "2", "url": "https://cdn/b"},
        {"key": "gone", "remote_id": "9"},
    ]  # fmt: skip
    document = export(journal, "provider")
    assert isinstance(document, dict)
    assert [item["assets_id"] for item in document["image_dataset_items"]] == ["1", "2", "9"]


def test_export_command_renders_rows_csv_and_the_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = make_run(tmp_path)
    assert main(["export", str(journal)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [orjson.loads(line) for line in lines] == list(export(journal))
    assert main(["export", str(journal), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [
        "key,path,remote_id,url,caption",
        f"a,{tmp_path / 'a.png'},1,,first",
    ]
    target = tmp_path / "dataset.json"
    assert main(["export", str(journal), "--format", "provider", "-o", str(target)]) == 0
    assert orjson.loads(target.read_bytes()) == export(journal, "provider")


def test_export_to_a_missing_folder_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = make_run(tmp_path)
    target = tmp_path / "nodir" / "x.json"
    assert main(["export", str(journal), "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert err == f"ingest: error: cannot write {target}: its folder does not exist\n"


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / ".ingest").mkdir(parents=True)
    return folder


def test_a_folder_names_its_journals(photos: Path) -> None:
    with pytest.raises(JournalError, match=r"is a folder, not a journal, and it has none yet"):
        status(photos)
    journal = photos / ".ingest" / "novita.journal"
    Journal.open(journal, Header(provider="novita", manifest=str(photos)))[0].close()
    for call in (status, replay, peek_header, lambda p: export(p)):
        with pytest.raises(JournalError, match=f"use its journal, {journal}$"):
            call(photos)
    (photos / ".ingest" / "scenario.journal").touch()
    with pytest.raises(
        JournalError, match=r"use one of its journals, .*novita\.journal, .*scenario"
    ):
        Journal.open(photos, Header(provider="novita", manifest="m"))
    assert not photos.with_name("photos.lock").exists()  # refused before taking a lock


@pytest.mark.parametrize("command", ["status", "export", "retry-failed", "repair"])
def test_every_journal_command_on_a_folder_exits_2_with_one_line(
    photos: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = photos / ".ingest" / "novita.journal"
    Journal.open(journal, Header(provider="novita", manifest=str(photos)))[0].close()
    assert main([command, str(photos)]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"ingest: error: {photos} is a folder, not a journal: use its journal, {journal}\n"
    )


def test_a_journal_path_under_a_file_is_a_journal_error(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    bad = afile / "run.journal"
    for call in (peek_header, status, lambda p: Journal.open(p, Header("novita", "m"))):
        with pytest.raises(
            JournalError, match="cannot be a journal: a folder in its path is a file"
        ):
            call(bad)


def test_a_missing_journal_is_a_journal_error(tmp_path: Path) -> None:
    assert peek_header(tmp_path / "nope") is None  # not there yet: a run creates it
    with pytest.raises(JournalError, match="no journal at"):
        status(tmp_path / "nope")
    with pytest.raises(JournalError, match="no journal at"):
        export(tmp_path / "nope")


def test_failed_finalize_keeps_what_a_resume_needs(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    landed = Landed(remote_id="r", extra={"order_id": "o"}, size=5, mtime_ns=6)
    opened, _ = Journal.open(journal, Header(provider="autoenhance", manifest="m"))
    with opened:
        opened.record(failed("k", 1, Action.RETRY, "http_503", "unavailable", landed=landed))
    rec = replay(journal).unfinished["k"]
    assert rec["s"] == "fail" and rec.get("st") == "up"
    assert (rec.get("r"), rec.get("x"), rec.get("z"), rec.get("m")) == (
        "r",
        {"order_id": "o"},
        5,
        6,
    )


@pytest.mark.parametrize("dry_run", [True, False])
def test_run_with_a_folder_as_its_journal_exits_2_with_one_line(
    photos: Path,
    dry_run: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NOVITA_API_KEY", "sk-test")  # read before the journal is opened
    manifest = photos.parent / "m.jsonl"
    manifest.write_bytes(orjson.dumps({"path": "a.png"}) + b"\n")
    args = ["run", str(manifest), "--provider", "novita", "--journal", str(photos)]
    assert main([*args, "--dry-run"] if dry_run else args) == 2
    err = capsys.readouterr().err
    assert err == f"ingest: error: {photos} is a folder, not a journal, and it has none yet " + (
        f"(a run on the folder writes {photos}/.ingest/PROVIDER.journal)\n"
    )
