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
    failures,
    manifest_problem,
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
    """6 entries: 2 done, 2 failed, 2 rejected (1 without a key); 1 done is no longer listed."""
    manifest = tmp_path / "m.jsonl"
    entries = [
        {"path": "a.png", "id": "a", "caption": "first"},
        {"path": "b.png", "id": "b"},
        {"path": "c.png", "id": "c"},
        {"path": "d.png", "id": "d"},
    ]
    lines = [orjson.dumps(e) + b"\n" for e in entries]
    lines += [b"not json\n", orjson.dumps({"path": "e.png", "id": "e"}) + b"\n"]
    manifest.write_bytes(b"".join(lines))
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
        rejected(6, f"file not found: {tmp_path / 'e.png'}", "e"),
        manifest_end(6),
    ]
    opened, _ = Journal.open(journal, Header(provider="novita", manifest=str(manifest)))
    with opened:
        for rec in records:
            opened.record(rec)
    return journal


def test_status_counts_the_manifest_as_it_is_now(tmp_path: Path) -> None:
    journal = make_run(tmp_path)
    info = status(journal)
    assert isinstance(info, JournalStatus)
    assert (info.done, info.failed, info.rejected, info.in_flight) == (2, 2, 2, 0)
    assert (info.total, info.not_started, info.removed, info.failed_item) == (6, 0, 1, 1)
    assert (info.runs, info.complete, info.torn_tail, info.manifest_problem) == (
        1,
        False,
        False,
        None,
    )
    assert info.problems == {
        "fail_item/too_large": 1,
        "retry/connection reset by the storage host": 1,
        "rejected/invalid JSON at column N: invalid literal, expected '…'": 1,
        "rejected/file not found": 1,
    }
    assert info.to_json()["complete"] is False
    # The journal alone (its end record names nothing gone) still counts the unlisted item.
    assert replay(journal).counts() == {"done": 3, "failed": 2, "rejected": 2, "in_flight": 0}


def test_status_without_its_manifest_counts_the_journal_and_says_why(tmp_path: Path) -> None:
    journal = make_run(tmp_path)
    (tmp_path / "m.jsonl").unlink()
    info = status(journal)
    assert info.manifest_problem == "manifest not found (no such file)"
    assert (info.total, info.done, info.failed, info.rejected) == (6, 3, 2, 2)
    assert info.next_steps()[0].startswith("the manifest cannot be read (manifest not found")
    assert [f.key for f in failures(journal)] == ["c", "d", "e", None]  # journal order
    rows = list(export(journal))
    assert [row["key"] for row in rows] == ["b", "a", "gone"]  # all of them, in journal order
    assert "removed" not in rows[-1]
    assert manifest_problem(journal) == "manifest not found (no such file)"


def test_status_command_prints_the_library_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = make_run(tmp_path)
    assert main(["status", str(journal), "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == status(journal).to_json()
    assert main(["status", str(journal)]) == 0
    out = capsys.readouterr().out
    assert "done      2" in out and "fail_item/too_large" in out and "incomplete" in out
    assert "1 item uploaded earlier is no longer in the manifest" in out


def test_export_rows_follow_the_manifest_and_leave_removed_items_out(tmp_path: Path) -> None:
    journal = make_run(tmp_path)
    listed = [
        {"key": "a", "path": str(tmp_path / "a.png"), "remote_id": "1", "caption": "first",
         "file_id": "f1"},
        {"key": "b", "path": str(tmp_path / "b.png"), "remote_id": "2", "url": "https://cdn/b"},
    ]  # fmt: skip
    assert list(export(journal)) == listed
    assert list(export(journal, include_removed=True)) == [
        *listed,
        {"key": "gone", "remote_id": "9", "removed": "true"},
    ]
    [document] = export(journal, "provider")
    assert orjson.loads(orjson.dumps(document))["image_dataset_items"] == [
        {"assets_id": "1", "caption": "first"},
        {"assets_id": "2"},
    ]
    [document] = export(journal, "provider", include_removed=True)
    items = orjson.loads(orjson.dumps(document))["image_dataset_items"]
    assert [item["assets_id"] for item in items] == ["1", "2", "9"]


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
    assert [orjson.loads(target.read_bytes())] == export(journal, "provider")


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
