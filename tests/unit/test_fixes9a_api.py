"""Library calls of defects found in session 8: a full disk at the journal's opening is a stopped
`Result`, as one mid-run is, not a raised `JournalError`; a resume given no `format` reads the
manifest as the journal's run was told to."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import ingest
from ingest.errors import JournalMismatch
from tests.images import make_image


def test_a_full_disk_at_the_journals_opening_is_a_stopped_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`await ingest.upload(...)` raised `JournalError` for it while the same full disk one
    record later was `stop_reason=JOURNAL`; the CLI exits 3 for both."""
    make_image(tmp_path / "a.png", "png", 256, 1)

    def full(fd: int, data: bytes, offset: int) -> int:  # the lock file's pid: the first write
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("ingest.journal.maintenance.os.pwrite", full)
    result = ingest.upload_sync(tmp_path, provider="novita", sim=True)
    assert result.stop_reason is ingest.StopReason.JOURNAL and not result.complete
    assert result.stop_message is not None and "the disk is full" in result.stop_message
    assert (result.done, result.this_run.api_calls, result.journal) == (
        0,
        0,
        tmp_path / ".ingest" / "novita.journal",
    )

    async def steered() -> ingest.Result:
        async with ingest.open_upload(tmp_path, provider="novita", sim=True) as run:
            snaps = [snap async for snap in run.snapshots()]
            assert len(snaps) == 1 and snaps[0].counters.done == 0
            run.drain()  # nothing to steer: no error either
            return await run.wait()

    import anyio

    assert anyio.run(steered).stop_reason is ingest.StopReason.JOURNAL


def test_a_resume_without_format_reads_the_manifest_as_the_journal_records(tmp_path: Path) -> None:
    """A CSV named `list.txt`, first run with `format="csv"`: a resume without it read the file
    as a list by its name (its header row a missing file `path`); `retry-failed` too."""
    make_image(tmp_path / "a.png", "png", 256, 1)
    manifest = tmp_path / "list.txt"
    manifest.write_text("path,caption\na.png,a cat\n")
    first = ingest.upload_sync(manifest, provider="novita", sim=True, format="csv")
    assert first.complete and first.done == 1
    again = ingest.upload_sync(manifest, provider="novita", sim=True)
    assert again.complete, again
    assert (again.this_run.skipped, again.rejected) == (1, 0)
    with pytest.raises(JournalMismatch, match="format"):  # another one is refused
        ingest.upload_sync(manifest, provider="novita", sim=True, format="list")
