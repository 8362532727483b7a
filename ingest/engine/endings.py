"""How an item's ending is recorded: journaled, counted, heard, and a run stopped for it.

Owns `Endings`, the part of the `Engine` every stage calls when an item
ends (also the finalizers' `Outcomes`): `uploaded` (``up``, before a
finalize), `done`, `fail` (a STOP-class error stops the run instead; a fetched
source its local twin's check rejects is `reject`ed), `reject`, and
`_record`, through which every record goes (journal, then the tally; a
journal that cannot be written stops the run). `_stop` is the one way a run
is stopped: the first reason and message are kept.

Invariants: a record reaches the journal before the tally or the observer
hears of it; an item's read-ahead or converted bytes are let go once it is
done or failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ingest.engine.outcomes import Counters, Guarded, ItemDone, StopReason
from ingest.errors import UNREACHABLE, Action, JournalError, ManifestError, TransferError
from ingest.journal import records
from ingest.preparing import SourceRejected, noting_conversion

if TYPE_CHECKING:
    import anyio

    from ingest.engine.breaker import Breaker
    from ingest.engine.finalize import ToFinalize
    from ingest.item import Source
    from ingest.journal import Journal, Replay
    from ingest.journal.records import Record
    from ingest.preparing import Preparer
    from ingest.providers.base import Landed, Target
    from ingest.tally import Tally


class Endings:
    """The engine's item endings (see the module docstring); `Engine` sets the state."""

    journal: Journal
    replay: Replay
    tally: Tally
    counters: Counters
    preparer: Preparer
    observer: Guarded | None
    stop_reason: StopReason | None
    stop_message: str | None
    _scope: anyio.CancelScope | None
    _breaker: Breaker

    def _stop(self, reason: StopReason, message: str) -> None:
        if self.stop_reason is None:
            self.stop_reason, self.stop_message = reason, message
        if self._scope is not None:
            self._scope.cancel()

    def _record(self, rec: Record) -> None:
        try:
            self.journal.record(rec)
        except JournalError as exc:
            self._stop(StopReason.JOURNAL, str(exc))
            return
        self.tally.apply(rec)
        if rec["s"] in ("done", "fail"):
            self.preparer.forget(rec["k"])  # its fetched or converted bytes are no longer needed

    def uploaded(self, key: str, source: Source, target: Target) -> None:
        """Journal an item whose bytes landed, before its finalize (`up`)."""
        size, mtime_ns = self._file_of(key, source)
        rec = records.uploaded(key, target.remote_id, size, mtime_ns, target.extra)
        self._record(noting_conversion(rec, source))

    def _file_of(self, key: str, source: Source | None) -> tuple[int, int]:
        """(size, mtime ns) of an item: its source's, or the journal's for one resumed."""
        if source is not None:
            return source.file_size, source.mtime_ns
        return records.file_of(self.replay.unfinished.get(key))

    def done(self, key: str, line: int, source: Source | None, landed: Landed) -> None:
        size, mtime_ns = self._file_of(key, source)
        rec = records.completed(
            key, landed.remote_id, size, mtime_ns, url=landed.url, extra=landed.extra
        )
        self._record(noting_conversion(rec, source))
        if source is not None:
            self.counters.bytes_done += source.size
        self.counters.done += 1
        self._breaker.succeeded()
        if self.observer is not None:  # resumed items too (only finalized by this run)
            self.observer.item_done(ItemDone(key, line, size, landed, uploaded=source is not None))

    def _stop_for(self, err: TransferError) -> None:
        """End the run for a STOP-class error: an API never reached, or the provider's refusal."""
        if err.code == UNREACHABLE:
            self._stop(StopReason.UNREACHABLE, err.message)
        else:
            self._stop(StopReason.PROVIDER, str(err))

    def fail(
        self, key: str, line: int, err: TransferError, *, landing: ToFinalize | None = None
    ) -> None:
        """Record a failed item; `landing` is its target (and source) when only finalize failed."""
        if err.action is Action.STOP:
            self._stop_for(err)
            return
        if isinstance(err, SourceRejected) and landing is None:
            self.reject(key, err.rejection)  # as a local file of its type is: checked again
            # Its fetch may have left a body open or spooled (a size checked after the fetch);
            # `_record` lets go only on done or fail, as a reader's `bad` may share a key in
            # flight (a duplicate line).
            self.preparer.forget(key)
            return
        self.counters.failed += 1
        kept = None
        if landing is not None:
            size, mtime_ns = self._file_of(key, landing.source)
            kept = records.Landed(landing.target.remote_id, landing.target.extra, size, mtime_ns)
        self._record(records.failed(key, line, err.action, err.code, err.message, landed=kept))
        if self.observer is not None:
            self.observer.item_failed(key, line, err)
        if (tripped := self._breaker.failed(err)) is not None:
            self._stop(StopReason.CIRCUIT_BREAKER, tripped)

    def reject(self, key: str | None, err: ManifestError) -> None:
        """Record a rejected entry (`bad`): a re-run checks it again."""
        self.counters.rejected += 1
        self._record(records.rejected(err.line, err.reason, key))
        if self.observer is not None:
            self.observer.item_rejected(key, err)
