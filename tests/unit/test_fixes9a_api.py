"""Library calls of defects found in session 8: a full disk at the journal's opening is a stopped
`Result`, as one mid-run is, not a raised `JournalError`."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import ingest
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
