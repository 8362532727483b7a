"""One engine across a worker's chunks: the entries it is fed, and when a chunk is complete.

Owns how a coordinated worker keeps one engine (its tasks, its preparer and
prefetch, its scratch journal; the provider's sessions and pools are the
worker's) for chunk after chunk, instead of a new one per chunk: each cost
~13 ms of CPU (a scratch journal opened, fsynced and removed, some forty
tasks, the engine's parts) and drained the pipeline at every chunk's end.

How it works: `Feed.entries()` is the engine's manifest, consumed in its
reader thread. It yields the first chunk's unsettled entries (the worker
took that lease before making the engine), then, one hop to the event loop
(`anyio.from_thread.run`), takes the next lease and reads its record
(`next_chunk`), yields those, and so on. The items another worker landed but
did not finalize are given to the engine's replay there, in the reader
thread, just before the chunk's entries are triaged (`landing.resume`). It
stops taking chunks when none can be taken at once, after `ENGINE_CHUNKS`
(the worker then starts a new engine and scratch journal), when the chunk
before the one just read is not finished either (`HELD`: chunks smaller than
the reader's lead), or once `stopped()` (a drain, a fence, a stop). `Feed` is also the engine's
observer: each line read is open until its outcome is heard (done, failed,
rejected, changed), and a chunk read whole whose lines are all closed is
handed to `on_complete` (the worker ships, then acknowledges it) while the
engine goes on with the next chunk.

Invariants: a chunk is complete only once every line read of it had its
outcome heard, or, after the engine ended neither drained nor stopped,
once it was read whole (every entry it read then ran to its end); the feed
takes no chunk once `stopped()`; every chunk it took is in `fed`, so the
worker acknowledges, hands back or releases each.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import anyio.from_thread

if TYPE_CHECKING:
    from ingest.coord.entries import ChunkReader, Entry
    from ingest.coord.lease import Lease
    from ingest.engine import EngineSettings
    from ingest.engine.outcomes import ItemDone, Observer
    from ingest.errors import ManifestError, TransferError
    from ingest.journal import Replay

ENGINE_CHUNKS = 64  # chunks one engine (and its scratch journal, ~7 MB at 1,000 lines) serves
# Chunks one engine holds unfinished at most: the one it finishes and the one it reads. The
# reader runs ahead of the items in flight (a read batch, the streams); a chunk smaller than
# that would otherwise have it take chunk after chunk at once, which the other workers could
# have taken. Reaching this, the engine ends (it cannot wait: the chunk before may be in the
# read batch that is waiting); the worker starts another on the next chunk.
HELD = 2


@dataclass(slots=True, eq=False)
class Fed:
    """A chunk taken for the engine: its lease, its record's state, its open lines."""

    lease: Lease
    skip: set[int]  # lines already settled in the run's record: not fed
    landed: dict[int, str]  # landed, not finalized (`up` records by line): finalize only
    open: set[int] = field(default_factory=set)  # lines read, their outcome not yet heard
    read: bool = False  # every entry of the chunk was read
    complete: bool = False  # handed to `on_complete`
    acked: bool = False  # acknowledged (by the worker)


class Feed:
    """The entries of chunk after chunk for one engine, and the observer that closes them."""

    def __init__(
        self,
        reader: ChunkReader,
        first: Fed,
        next_chunk: Callable[[], Coroutine[Any, Any, Fed | None]],
        forward: Observer,
        *,
        limit: int = ENGINE_CHUNKS,
    ) -> None:
        self._reader = reader
        self._next_chunk = next_chunk
        self._forward = forward
        self._limit = limit
        self._lines: dict[int, Fed] = {}  # open line -> its chunk
        self._replay: Replay | None = None
        self._on_complete: Callable[[Fed], None] = lambda fed: None
        self._stopped: Callable[[], bool] = lambda: False
        self.fed: list[Fed] = [first]
        self.resumed = 0  # landed items given to the engine to finalize

    def bind(
        self, replay: Replay, on_complete: Callable[[Fed], None], stopped: Callable[[], bool]
    ) -> None:
        """The engine's replay, who hears of a complete chunk, and when to take no more."""
        self._replay, self._on_complete, self._stopped = replay, on_complete, stopped

    def fitted(self, settings: EngineSettings) -> EngineSettings:
        """`settings` with a read batch of at most half a chunk: the reader's lead stays
        under a chunk (`HELD`), so one engine serves small chunks too."""
        chunk = self.fed[0].lease.chunk
        half = max(1, (chunk.last - chunk.first + 1) // 2)
        return settings if settings.read_batch <= half else replace(settings, read_batch=half)

    def valid(self, lease_s: float, margin_s: float) -> bool:
        """Every chunk not yet complete is still this worker's (`lease.Lease.valid`)."""
        return all(fed.complete or fed.lease.valid(lease_s, margin_s) for fed in self.fed)

    def entries(self) -> Iterator[Entry]:
        """The engine's manifest (its reader thread): chunk after chunk, as long as there are."""
        fed: Fed | None = self.fed[0]
        while fed is not None:
            whole = yield from self._chunk(fed)
            if not whole:
                return  # a drain (or a lost lease): the rest is left to the next taker
            anyio.from_thread.run_sync(self._read, fed)
            fed = None
            if len(self.fed) >= self._limit or self._stopped():
                return
            if sum(not f.complete for f in self.fed) >= HELD:
                return  # the chunk before is not finished either: this engine ends instead
            fed = anyio.from_thread.run(self._next_chunk)
            if fed is not None:
                self.fed.append(fed)

    def _chunk(self, fed: Fed) -> Generator[Entry, None, bool]:
        """The chunk's entries; returns whether it was read whole."""
        from ingest.coord import landing  # the engine's import: not before a chunk is in hand

        assert self._replay is not None
        self.resumed += landing.resume(self._replay, fed.landed)
        chunk = fed.lease.chunk
        for entry in self._reader.entries(chunk.first, chunk.last, fed.skip):
            if self._stopped():
                return False
            line = entry.line
            if line is not None:
                fed.open.add(line)
                self._lines[line] = fed
            yield entry
        return True

    def _read(self, fed: Fed) -> None:
        fed.read = True
        self._check(fed)

    def _check(self, fed: Fed) -> None:
        if fed.read and not fed.open and not fed.complete:
            fed.complete = True
            self._on_complete(fed)

    def _closed(self, line: int | None) -> None:
        fed = self._lines.pop(line, None) if line is not None else None
        if fed is not None:
            fed.open.discard(line)
            self._check(fed)

    def ended(self) -> list[Fed]:
        """The engine ended neither drained nor stopped: every chunk read whole is complete."""
        done = [fed for fed in self.fed if fed.read and not fed.complete]
        for fed in done:
            fed.complete = True
        return done

    # -- the Observer protocol (the shipper hears every event first) --------

    def item_done(self, done: ItemDone) -> None:
        self._forward.item_done(done)
        self._closed(done.line)

    def item_failed(self, key: str, line: int, err: TransferError) -> None:
        self._forward.item_failed(key, line, err)
        self._closed(line)

    def item_rejected(self, key: str | None, err: ManifestError) -> None:
        self._forward.item_rejected(key, err)
        self._closed(err.line)

    def item_changed(self, key: str, line: int) -> None:
        self._forward.item_changed(key, line)
        self._closed(line)
