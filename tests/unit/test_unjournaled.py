"""A full disk mid-run: the summary explains "uploaded N files" next to fewer done.

The journal's disk fills up (ENOSPC on the write that carries the first
`done` records, as in the newcomer's run) while a Novita run uploads to the
in-process emulator. The items whose upload landed but whose `done` record
never reached the disk are counted (`Result.unjournaled`), and the summary
says so in one line instead of leaving "uploaded 568 files" beside "566 done"
unexplained (K6).
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest

import ingest
from ingest.api.result import Result
from ingest.cli.report import Reporter
from ingest.engine import StopReason
from ingest.journal import replay
from tests.images import make_dataset, write_jsonl_manifest


def test_files_uploaded_but_not_journaled_are_counted_and_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = make_dataset(tmp_path / "images", 40, min_size=512, max_size=2048, seed=3)
    manifest = write_jsonl_manifest(paths, tmp_path / "m.jsonl")
    journal = tmp_path / "m.jsonl.novita.journal"
    real_write = os.write

    def disk_fills_at_the_first_done(fd: int, data: bytes | memoryview) -> int:
        try:
            name = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            name = ""
        if name == str(journal) and b'"s":"done"' in bytes(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", disk_fills_at_the_first_done)
    result = ingest.upload_sync(manifest, provider="novita", sim=True, put_concurrency=4)
    monkeypatch.undo()

    assert result.stop_reason is StopReason.JOURNAL
    on_disk = len(replay(journal).done)
    assert result.done == on_disk == 0
    assert result.this_run.done >= 1  # uploads landed whose records were lost
    assert result.unjournaled == result.this_run.done - on_disk

    err = io.StringIO()
    Reporter("plain", err=err).summary(result)
    text = err.getvalue()
    assert f"uploaded {result.this_run.done} file" in text and "0 done of" not in text
    n = result.unjournaled
    assert (
        f"{n} file{'s' if n != 1 else ''} {'was' if n == 1 else 'were'} uploaded but not "
        "journaled (the journal could not be written): the next run checks them"
    ) in text


def test_no_such_line_when_every_upload_was_journaled(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path / "images", 5, min_size=512, max_size=1024, seed=4)
    result: Result = ingest.upload_sync(
        write_jsonl_manifest(paths, tmp_path / "m.jsonl"), provider="novita", sim=True
    )
    assert result.unjournaled == 0 and result.done == result.this_run.done == 5
    err = io.StringIO()
    Reporter("plain", err=err).summary(result)
    assert "not journaled" not in err.getvalue()
