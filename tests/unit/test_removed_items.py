"""Outcomes follow the manifest as it is now: items removed after upload, next steps, problems.

Replays the user's report (W3): a folder uploaded, one image deleted and one
added, uploaded again. The counts must be the folder's (never "13 done of
12"), the deleted image must be reported and left out of `export` (rows and
the provider's document) unless asked for, and `status` must call the run
complete. Also: `status` names what would help when a rerun cannot
(U4), lists every failed and rejected item (U2), and groups problems by
their cause without paths (U3). Uploads go to the in-process emulator.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

import ingest
from ingest.cli.main import main
from ingest.journal import Failure, failures, status
from tests.images import make_dataset, make_image, write_jsonl_manifest
from tests.results import journal_of


def upload(source: Path) -> ingest.Result:
    return ingest.upload_sync(source, provider="novita", sim=True, put_concurrency=4)


def keys_of(rows: object) -> list[str]:
    assert isinstance(rows, list)
    return [row["key"] for row in rows]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    make_dataset(tmp_path / "photos", 12, max_size=4096, seed=5)
    return tmp_path / "photos"


def test_a_folder_pruned_after_its_upload_counts_and_exports_the_folder(photos: Path) -> None:
    journal = photos / ".ingest" / "novita.journal"
    assert upload(photos).complete
    (photos / "img-000005.webp").unlink()
    shutil.copy(photos / "img-000000.png", photos / "aaa_new.png")

    again = upload(photos)
    assert (again.done, again.total, again.removed, again.this_run.done) == (12, 12, 1, 1)
    assert again.complete and again.not_done == 0

    info = status(journal)
    assert (info.done, info.total, info.removed, info.not_started) == (12, 12, 1, 0)
    assert info.complete and info.next_steps() == ()
    listed = sorted(p.name for p in photos.iterdir() if p.is_file())
    assert keys_of(list(ingest.export(journal))) == listed
    every = list(ingest.export(journal, include_removed=True))
    assert keys_of(every) == [*listed, "img-000005.webp"]
    assert every[-1]["removed"] == "true" and "path" not in every[-1]
    [document] = ingest.export(journal, "provider")
    items = document["image_dataset_items"]
    assert isinstance(items, list) and len(items) == 12
    assert {item["assets_id"] for item in items} == {row["remote_id"] for row in every[:-1]}


def test_the_cli_reports_removed_items_and_exports_them_only_when_asked(
    photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = photos / ".ingest" / "novita.journal"
    upload(photos)
    (photos / "img-000005.webp").unlink()
    assert main(["run", str(photos), "--provider", "novita", "--sim", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "11 done of 11" in err
    assert "1 item uploaded earlier is no longer in the manifest" in err

    assert main(["status", str(journal)]) == 0
    out = capsys.readouterr().out
    assert "done      11" in out and out.rstrip().endswith("complete")
    assert "incomplete" not in out and "run the same" not in out
    assert main(["export", str(journal)]) == 0
    rows = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "img-000005.webp" not in keys_of(rows) and len(rows) == 11
    assert main(["export", str(journal), "--format", "provider"]) == 0
    assert len(orjson.loads(capsys.readouterr().out)["image_dataset_items"]) == 11
    assert main(["export", str(journal), "--include-removed", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "key,path,remote_id,url,caption,removed"
    assert lines[-1].startswith("img-000005.webp,,") and lines[-1].endswith(",true")


def test_a_jsonl_manifest_edited_between_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = make_dataset(tmp_path / "img", 30, max_size=4096, seed=6)
    manifest = write_jsonl_manifest(paths, tmp_path / "m.jsonl")
    assert upload(manifest).complete
    lines = manifest.read_bytes().splitlines(keepends=True)
    manifest.write_bytes(b"".join(lines[:10] + lines[20:]))  # ids item-000010..19 removed

    again = upload(manifest)
    assert (again.done, again.total, again.removed) == (20, 20, 10)
    assert again.complete
    info = status(journal_of(again))
    assert (info.done, info.total, info.removed) == (20, 20, 10)
    assert info.complete
    assert keys_of(list(ingest.export(journal_of(again)))) == [
        f"item-{n:06d}" for n in [*range(10), *range(20, 30)]
    ]

    # Unchanged since the run read it (its end record names the file): status reads no manifest.
    import ingest.journal.report as report

    def unread(*args: object) -> None:
        raise AssertionError("the manifest was read again")

    with monkeypatch.context() as patch:
        patch.setattr(report, "manifest_entries", unread)
        assert status(journal_of(again)) == info
    # Edited since: read again, and counted as it is now.
    manifest.write_bytes(b"".join(lines[:5]))
    edited = status(journal_of(again))
    assert (edited.done, edited.total, edited.removed) == (5, 5, 25)


def gif(path: Path) -> Path:
    path.write_bytes(b"GIF89a" + bytes(200))  # novita accepts png, jpeg and webp only
    return path


def test_status_says_what_helps_when_a_rerun_cannot(photos: Path) -> None:
    journal = photos / ".ingest" / "novita.journal"
    for n in range(2):
        gif(photos / f"anim-{n}.gif")
    result = upload(photos)
    assert (result.done, result.rejected, result.total) == (12, 2, 14)
    info = status(journal)
    (step,) = info.next_steps()
    assert step.startswith("2 items rejected locally, which a rerun rejects again")
    assert f"ingest status --failed {journal}" in step
    assert "run the same" not in step
    assert info.problems == {
        "rejected/unsupported image type gif (novita accepts jpeg, png, webp; --convert converts it)": 2
    }
    # The user prunes what was rejected: the folder is complete, without another run.
    for n in range(2):
        (photos / f"anim-{n}.gif").unlink()
    pruned = status(journal)
    assert pruned.complete and (pruned.rejected, pruned.total) == (0, 12)


def test_status_failed_lists_every_problem_beyond_the_first_fifty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = make_dataset(tmp_path / "img", 2, max_size=4096, seed=7)
    paths += [tmp_path / "img" / f"missing-{n:02d}.png" for n in range(60)]
    manifest = write_jsonl_manifest(paths, tmp_path / "m.jsonl")
    with manifest.open("ab") as fh:
        fh.write(b"{oops\n")
    result = upload(manifest)
    assert (result.done, result.rejected) == (2, 61)

    found = list(failures(journal_of(result)))
    assert len(found) == 61
    first = found[0]
    assert first == Failure(
        key="item-000002",
        line=3,
        kind="bad",
        code="file not found",
        reason=f"file not found: {tmp_path / 'img' / 'missing-00.png'}",
    )
    assert found[-1].key is None and found[-1].line == 63 and found[-1].kind == "bad"
    problems = status(journal_of(result)).problems
    (missing, bad_json) = problems
    assert (missing, problems[missing]) == ("rejected/file not found", 60)
    assert bad_json.startswith("rejected/invalid JSON at column N: ") and problems[bad_json] == 1

    assert main(["status", str(result.journal), "--failed", "--json"]) == 0
    listed = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed == [failure.to_json() for failure in found]
    assert listed[59] == {
        "key": "item-000061",
        "line": 62,
        "class": "bad",
        "action": None,
        "code": "file not found",
        "reason": f"file not found: {tmp_path / 'img' / 'missing-59.png'}",
    }
    assert main(["status", str(result.journal), "--failed"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 61
    assert out[0] == f"line 3 item-000002: rejected: {first.reason}"


def test_the_run_points_past_its_first_fifty_problems_to_where_they_all_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = [tmp_path / f"missing-{n:02d}.png" for n in range(55)]
    manifest = write_jsonl_manifest(missing, tmp_path / "m.jsonl")
    journal = tmp_path / "m.jsonl.novita.journal"
    assert main(["run", str(manifest), "--provider", "novita", "--sim"]) == 1
    err = capsys.readouterr().err
    assert f"… more problems; `ingest status --failed {journal}` lists them all" in err
    assert len(list(failures(journal))) == 55
    assert main(["run", str(manifest), "--provider", "novita", "--sim", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "… more problems; `ingest validate MANIFEST --json` lists them all" in err


def test_failures_name_the_provider_class_and_code(tmp_path: Path) -> None:
    from ingest.errors import Action
    from ingest.journal import Header, Journal
    from ingest.journal.records import failed, manifest_end, run_started

    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(orjson.dumps({"path": "a.png", "id": "a"}) + b"\n")
    journal = tmp_path / "j"
    opened, _ = Journal.open(journal, Header(provider="novita", manifest=str(manifest)))
    with opened:
        opened.record(run_started(1.0, 1))
        opened.record(failed("a", 1, Action.FAIL_ITEM, "too_large_for_inline", "over 10 MiB"))
        opened.record(manifest_end(1))
    assert [f.to_json() for f in failures(journal)] == [
        {
            "key": "a",
            "line": 1,
            "class": "fail",
            "action": "fail_item",
            "code": "too_large_for_inline",
            "reason": "over 10 MiB",
        }
    ]
    (step,) = status(journal).next_steps()
    assert step.startswith("1 item refused by the provider, which a rerun does not retry")
    assert f"ingest retry-failed {journal}" in step


def test_problem_groups_hold_no_paths_and_are_never_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "a-rather-long-folder-name-that-pushes-paths-past-sixty-characters"
    folder.mkdir()
    make_image(folder / "ok.png", "png", 1024, 1)
    (folder / "loop_a.png").symlink_to("loop_b.png")
    (folder / "loop_b.png").symlink_to("loop_a.png")
    gif(folder / "anim.gif")
    result = upload(folder)
    assert (result.done, result.rejected) == (1, 3)
    groups = {
        "rejected/cannot open: Too many levels of symbolic links": 2,
        "rejected/unsupported image type gif (novita accepts jpeg, png, webp; --convert converts it)": 1,
    }
    assert status(journal_of(result)).problems == groups

    assert main(["validate", str(folder), "--provider", "novita", "--json"]) == 1
    by_reason = orjson.loads(capsys.readouterr().out)["by_reason"]
    assert {f"rejected/{reason}": n for reason, n in by_reason.items()} == groups
    assert main(["validate", str(folder), "--provider", "novita"]) == 1
    table = capsys.readouterr().out.split("\n  problem ", 1)[1]  # the table, after the lines
    assert str(folder) not in table and "cannot open: Too many levels of symbolic links" in table
