"""What the engine reports: live counters, snapshots, how a run ended, per-item events.

Owns the engine's outward values. `Counters` is the run's live tally (the
journal stays the source of truth); `Snapshot` a frozen view of it for
displays, with `Progress` (where the run stands against the whole manifest,
per the journal, with the seek-ahead total while reading); `Outcome` how a run ended, with a `StopReason` from a closed set
and the human message beside it; `Observer` the per-item events a display,
`--json` or a library caller listens to (the only definition: `ingest.Observer`
is this one), `ItemDone` what a finished item reports, and `Guarded` a caller's observer whose exceptions
stop the run instead of tearing its tasks down.

Invariant: `Outcome.stop_reason` and `Outcome.stop_message` are both set or
both `None` (`None`: the run read the whole manifest, or drained on request).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ingest.errors import ManifestError, TransferError
from ingest.lease import LateURL
from ingest.pacing import PacerStats
from ingest.providers.base import Landed

if TYPE_CHECKING:
    from ingest.manifest.folder import SkippedFiles


class StopReason(enum.StrEnum):
    """Why a run stopped before the end of its manifest (its value is what `--json` shows)."""

    INTERRUPTED = "interrupted"  # asked to stop now (a second Ctrl-C, a drain's grace ran out)
    PROVIDER = "provider"  # a STOP-class error: a bad key, no balance, a refused URL
    UNREACHABLE = "unreachable"  # the API could not be reached before it ever answered
    CIRCUIT_BREAKER = "circuit_breaker"  # a long streak of identical failures
    JOURNAL = "journal"  # the journal cannot be written (a full disk)


@dataclass(slots=True)
class Counters:
    """Live tallies of this run (the journal stays the source of truth)."""

    read: int = 0  # manifest entries read
    skipped: int = 0  # done in an earlier run
    done: int = 0
    failed: int = 0
    rejected: int = 0
    changed: int = 0  # done earlier, but the file changed since
    bytes_done: int = 0
    in_flight: int = 0
    api_calls: int = 0
    puts: int = 0
    retries: int = 0
    resigns: int = 0
    throttles: int = 0  # plane-wide throttles (each paused or slowed every call)
    waits_capped: int = 0  # server-asked waits (Retry-After) longer than `max_pause_s`, cut to it


@dataclass(frozen=True, slots=True)
class Progress:
    """The run against its whole manifest: the journal's counts (earlier runs' included)."""

    done: int = 0
    failed: int = 0
    rejected: int = 0
    total: int | None = None  # exact once reading ended, else the seek-ahead count, else None
    estimated: bool = False  # `total` is the seek-ahead count, not yet confirmed by reading
    counting: bool = False  # the seek-ahead count is still going

    @property
    def left(self) -> int | None:
        """Items neither done, failed nor rejected yet (None while the total is unknown)."""
        if self.total is None:
            return None
        return max(0, self.total - self.done - self.failed - self.rejected)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A frozen view for displays: counters plus pacing state."""

    counters: Counters  # this run's
    total: int | None  # entries read, once reading ended (see `progress` for an early total)
    elapsed_s: float
    api_pacer: PacerStats
    reading_done: bool
    progress: Progress = Progress()
    skipped: SkippedFiles | None = None  # a folder's non-image files and loops, once counted
    late_url: LateURL | None = None  # the first upload URL that arrived (nearly) expired


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended."""

    counters: Counters
    stop_reason: StopReason | None  # None: ran to the end of the manifest (or drained)
    drained: bool  # stopped early on request, after finishing in-flight work
    elapsed_s: float
    stop_message: str | None = None  # the human account of `stop_reason`, one line


@dataclass(frozen=True, slots=True)
class ItemDone:
    """An item finished (journaled done): what `Observer.item_done` receives."""

    key: str
    line: int  # its manifest line
    size: int  # the file's bytes (as journaled, for an item resumed from an earlier run)
    landed: Landed  # its remote id and, if any, final URL
    uploaded: bool  # False: its bytes landed in an earlier run; this run only finalized it


class Observer(Protocol):
    """Per-item events of a run, for displays, logs and callers of the library.

    Implement all four methods, or subclass `Observer` and override the ones
    you need (the others do nothing). Events are called on the event loop's
    thread, between the engine's steps: keep them quick and never block. An
    exception raised in an event stops the run as `abort` does (items in
    flight are redone by the next run) and is raised, as itself, by
    `Upload.wait` and `upload`.
    """

    def item_done(self, done: ItemDone) -> None:
        """An item landed at the provider and is journaled done."""
        return None

    def item_failed(self, key: str, line: int, err: TransferError) -> None:
        """The provider or storage refused the item, or its retries ran out."""
        return None

    def item_rejected(self, key: str | None, err: ManifestError) -> None:
        """A manifest entry or its file cannot be uploaded (`key` None: no usable key)."""
        return None

    def item_changed(self, key: str, line: int) -> None:
        """An item done earlier whose file changed since (kept; see `reupload_changed`)."""
        return None


class Guarded:
    """The caller's observer, its exceptions caught: the first one is kept and stops the run.

    An exception raised in an event would otherwise end the task that made the
    event (a worker, the reader), and every other task meeting the same bug
    before the run is cancelled would add its own copy to an ExceptionGroup.
    Here the first is kept in `error` and handed to `on_error` (the engine
    aborts the run); the observer hears nothing more.
    """

    def __init__(self, inner: Observer, on_error: Callable[[Exception], None]) -> None:
        self.inner = inner
        self.error: Exception | None = None
        self._on_error = on_error

    def item_done(self, done: ItemDone) -> None:
        self._event(self.inner.item_done, done)

    def item_failed(self, key: str, line: int, err: TransferError) -> None:
        self._event(self.inner.item_failed, key, line, err)

    def item_rejected(self, key: str | None, err: ManifestError) -> None:
        self._event(self.inner.item_rejected, key, err)

    def item_changed(self, key: str, line: int) -> None:
        self._event(self.inner.item_changed, key, line)

    def _event(self, event: Callable[..., None], *args: Any) -> None:
        if self.error is not None:
            return
        try:
            event(*args)
        except Exception as exc:
            self.error = exc
            self._on_error(exc)
