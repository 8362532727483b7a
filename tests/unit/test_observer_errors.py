"""An exception raised in the caller's `Observer` stops the run and is raised once, as itself.

A new user's `item_done` raised a ValueError: `upload` raised a nested
ExceptionGroup holding 16 copies of it (every worker met it before the run
was cancelled). Now the first one aborts the run (the journal stays
consistent; items in flight are redone by the next run) and `wait()` (so
`upload`, and leaving the block) raises that exception object, with its
own cause.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import ingest
from ingest.errors import ManifestError
from tests.images import make_dataset, write_jsonl_manifest


class Raises(ingest.Observer):
    """Raises a new ValueError (caused by a KeyError) on every `event` after the first `after`."""

    def __init__(self, event: str, after: int = 0) -> None:
        self.event = event
        self.after = after
        self.calls = 0
        self.raised: list[ValueError] = []

    def _maybe(self, event: str) -> None:
        if event != self.event:
            return
        self.calls += 1
        if self.calls > self.after:
            error = ValueError(f"observer broke on call {self.calls}")
            error.__cause__ = KeyError("the caller's own cause")
            self.raised.append(error)
            raise error

    def item_done(self, done: ingest.ItemDone) -> None:
        self._maybe("item_done")

    def item_rejected(self, key: str | None, err: ManifestError) -> None:
        self._maybe("item_rejected")


def manifest_of(tmp_path: Path, n: int) -> Path:
    paths = make_dataset(tmp_path / "images", n, min_size=512, max_size=2048)
    return write_jsonl_manifest(paths, tmp_path / "m.jsonl")


@pytest.mark.anyio
async def test_an_observer_error_is_raised_once_as_itself_and_the_run_resumes(
    tmp_path: Path,
) -> None:
    manifest = manifest_of(tmp_path, 60)
    observer = Raises("item_done", after=3)
    with pytest.raises(ValueError, match="observer broke") as raised:
        await ingest.upload(
            manifest, provider="novita", sim=True, observer=observer, put_concurrency=16
        )
    assert raised.value is observer.raised[0]  # the first one, not a group of copies
    assert isinstance(raised.value.__cause__, KeyError)
    status = ingest.status(manifest.with_name("m.jsonl.novita.journal"))
    assert 4 <= status.done < 60 and status.failed == status.rejected == 0
    # The journal is consistent and released: the next run redoes what was in flight.
    again = await ingest.upload(manifest, provider="novita", sim=True)
    assert again.complete and again.done == again.total == 60


@pytest.mark.anyio
async def test_an_observer_error_raised_by_the_reader_leaves_the_block_as_itself(
    tmp_path: Path,
) -> None:
    manifest = manifest_of(tmp_path, 3)
    with manifest.open("a") as fh:
        fh.write('{"path": "missing.png", "id": "gone"}\n')
    observer = Raises("item_rejected")
    run = ingest.open_upload(manifest, provider="novita", sim=True, observer=observer)
    with pytest.raises(ValueError, match="observer broke") as raised:
        async with run:
            pass
    assert raised.value is observer.raised[0]
    with pytest.raises(ValueError, match="observer broke") as again:
        await run.wait()
    assert again.value is observer.raised[0]
