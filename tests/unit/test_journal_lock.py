"""The run lock's file exists only while a run holds it (R9: `.lock` files were left behind).

`lock` takes an exclusive `flock` on ``<journal>.lock``; `unlock` removes the
file while still holding it, then lets go. A second run is refused while the
first holds it, and a run that locked a file its holder removed meanwhile takes
the lock again on the file at the path, so two runs never both hold it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import orjson
import pytest

from ingest.errors import JournalCorrupt, JournalLocked, JournalMismatch
from ingest.journal import Header, Journal, repair
from ingest.journal.maintenance import lock, unlock
from ingest.journal.records import run_started

HEADER = Header(provider="novita", manifest="/data/m.jsonl", created=1.0)


def _lock_file(journal: Path) -> Path:
    return journal.with_name(journal.name + ".lock")


def test_the_lock_file_is_removed_when_the_run_releases_it(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl.novita.journal"
    journal, _ = Journal.open(path, HEADER)
    assert _lock_file(path).read_text() == f"{os.getpid()}\n"
    with pytest.raises(JournalLocked, match=f"pid {os.getpid()}"):
        Journal.open(path, HEADER)
    assert _lock_file(path).exists()  # a refused run leaves the holder's file alone
    journal.record(run_started(0.0, 1))
    journal.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    with pytest.raises(JournalMismatch):
        Journal.open(path, Header(provider="scenario", manifest="/data/m.jsonl"))
    assert not _lock_file(path).exists()  # nor does a run refused for its binding


def test_a_lock_taken_on_a_released_file_is_taken_again_on_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j"
    first = lock(path)
    real_flock = fcntl.flock
    calls = []

    def flock_after_the_holder_let_go(fd: int, operation: int) -> None:
        # The second run opened the lock file; the first releases it (removing the file)
        # before the second one's flock, which then succeeds on the removed file.
        calls.append(fd)
        if len(calls) == 1:
            unlock(path, first)
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_the_holder_let_go)
    second = lock(path)
    monkeypatch.setattr(fcntl, "flock", real_flock)
    assert len(calls) == 2  # taken again, on the file now at the path
    assert os.path.samestat(os.fstat(second), os.stat(_lock_file(path)))
    with pytest.raises(JournalLocked):  # so a third run is refused, not let in beside it
        lock(path)
    unlock(path, second)
    assert not _lock_file(path).exists()


def test_repair_of_a_file_that_is_no_journal_creates_no_lock_file(tmp_path: Path) -> None:
    manifest = tmp_path / "mcopy.jsonl"
    manifest.write_text('{"id": "a", "path": "a.png"}\n')
    empty = tmp_path / "empty.journal"
    empty.write_bytes(b"")
    for path in (manifest, empty):
        with pytest.raises(JournalCorrupt):
            repair(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.journal", "mcopy.jsonl"]


def test_repair_releases_its_lock(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal, _ = Journal.open(path, HEADER)
    journal.record(run_started(0.0, 1))
    journal.close()
    with path.open("ab") as fh:
        fh.write(b"not a record\n" + orjson.dumps(run_started(1.0, 1)) + b"\n")
    done = repair(path)
    assert (done.kept, done.dropped) == (2, ((3, "unreadable record"),))
    assert done.backup is not None and done.backup.exists()
    assert not _lock_file(path).exists()


def test_a_full_disk_at_the_lock_leaves_no_lock_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Newcomer7: on a full disk (a 1 MiB tmpfs) the lock file was created, its pid could not
    be written, and the refused run left `<journal>.lock` behind (and its fd open)."""
    import errno

    from ingest.errors import JournalError

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    path = tmp_path / "m.jsonl.novita.journal"
    monkeypatch.setattr("ingest.journal.maintenance.os.pwrite", full)
    with pytest.raises(JournalError, match="the disk is full"):
        Journal.open(path, HEADER)
    assert list(tmp_path.iterdir()) == []
