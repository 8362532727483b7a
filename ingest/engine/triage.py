"""Triage: what the engine does with one manifest entry, decided before any network call.

Owns the reading of the journal's verdict on an item. Each entry becomes one
of a closed set of small values, and the reader dispatches on them with
`match`:

    Skipped       done in an earlier run (and unchanged, or its file is gone, or
                  its entry is bad now: a caption file, a row group; the upload
                  stands, as for a file gone)
    Source        checked and ready to upload (see `validate.Checker`)
    Resume        its bytes landed in an earlier run: only finalize is left
    Redo          in flight when a run was killed (last record `acq`): its
                  transfer outcome is unknown, so the provider is asked about
                  the acquired remote id first where it can tell
                  (`providers.base.Recovers`), else it is uploaded anew
    Changed       done earlier, but the file changed since (not uploaded again
                  unless asked: `--reupload-changed`)
    FailedBefore  a provider rejected it in an earlier run (not retried unless
                  asked: `--retry-failed`)
    Rejected      a bad manifest entry or a local check that failed; journaled
                  `bad`

Invariant: an item's key is only ever data. Whatever a manifest calls an
item ("failed", "changed"), the kind of outcome is the value's type, so no
id can be mistaken for a verdict. Triage runs in the reader's thread: it does
blocking `stat`s and sniffs, never awaits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ingest.engine.finalize import ToFinalize
from ingest.errors import ManifestError
from ingest.item import Item, Source
from ingest.journal import Replay, Unfinished, fingerprint, records
from ingest.providers.base import Target
from ingest.validate import Checker


@dataclass(frozen=True, slots=True)
class Skipped:
    """Done in an earlier run: nothing to do."""


SKIPPED = Skipped()


@dataclass(frozen=True, slots=True)
class Resume:
    """Bytes landed in an earlier run; only finalize is left."""

    landing: ToFinalize


@dataclass(frozen=True, slots=True)
class Redo:
    """Checked again, after a run was killed with it in flight (journaled `acq` only).

    `acquired` is the remote id (and extras) that run had signed; its URL was
    never journaled.
    """

    source: Source
    acquired: Target


@dataclass(frozen=True, slots=True)
class Changed:
    """Done earlier, but its file changed since; left as it is."""

    key: str
    line: int


@dataclass(frozen=True, slots=True)
class FailedBefore:
    """A provider rejected it in an earlier run; left failed."""

    key: str
    line: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """A bad entry: unreadable (no key) or an item that failed its local checks."""

    error: ManifestError
    key: str | None = None


Triaged = Skipped | Source | Resume | Redo | Changed | FailedBefore | Rejected


def redone_first(batch: list[Triaged]) -> list[Triaged]:
    """The batch with the items an earlier run left unfinished first (stable otherwise).

    Those items sit at the killed run's frontier, so they are in the first
    batches a resume reads; routed ahead of the new items of their batch,
    they take the first workers and finish before a new kill is likely.
    """
    if not any(isinstance(v, Redo | Resume) for v in batch):
        return batch
    return sorted(batch, key=lambda v: not isinstance(v, Redo | Resume))


def _landed_target(rec: Unfinished) -> Target | None:
    """The target of an item whose bytes landed earlier (finalize only), else None."""
    landed = records.landed_of(rec)
    if landed is None:
        return None
    return Target(
        remote_id=landed.remote_id, url=None, content_type="", lease=None, extra=landed.extra
    )


def _acquired_target(rec: Unfinished, source: Source) -> Target | None:
    """The target a killed run had signed for an item (journaled `acq` only), else None."""
    acquired = records.acquired_of(rec)
    if acquired is None:
        return None
    remote_id, extra = acquired
    return Target(
        remote_id=remote_id, url=None, content_type=source.content_type, lease=None, extra=extra
    )


class Triage:
    """`triage(entry)`: the journal's verdict, then the local checks, for one entry."""

    __slots__ = ("_check", "_finalize", "_replay", "_retry_failed", "_reupload_changed")

    def __init__(
        self,
        replay: Replay,
        check: Checker,
        *,
        finalize: bool,
        retry_failed: bool,
        reupload_changed: bool,
    ) -> None:
        self._replay = replay
        self._check = check
        self._finalize = finalize
        self._retry_failed = retry_failed
        self._reupload_changed = reupload_changed

    def batch(self, entries: list[Item | ManifestError]) -> list[Triaged]:
        """Each entry's verdict; first, the files to check are hinted to the disk together
        (the checker's `ReadAhead`, where it has one), and whatever no check took is closed.

        Hinted are only the files a check will read: the journal's verdicts come first, so
        an item done, failed before or landed (finalize only) is not opened for nothing."""
        ahead = self._check.ahead
        if ahead is None:
            return [self(entry) for entry in entries]
        journaled = [self._journaled(entry) for entry in entries]
        ahead.advise(entry for entry in journaled if isinstance(entry, Item))
        try:
            return [self._checked(v) if isinstance(v, Item) else v for v in journaled]
        finally:
            ahead.close()

    def __call__(self, entry: Item | ManifestError) -> Triaged:
        verdict = self._journaled(entry)
        return self._checked(verdict) if isinstance(verdict, Item) else verdict

    def _journaled(self, entry: Item | ManifestError) -> Triaged | Item:
        """The verdict the journal alone gives, or the item itself when its file is checked."""
        if isinstance(entry, ManifestError):
            if entry.key is not None and self._replay.is_done(entry.key):
                return SKIPPED  # a `bad` record would erase the upload from the journal
            return Rejected(entry, entry.key)
        return self._item(entry)

    def _item(self, item: Item) -> Triaged | Item:
        replay = self._replay
        if replay.is_done(item.key):
            if item.url is not None:
                return SKIPPED  # a remote source: no local file to tell a change by
            try:
                st = os.stat(item.path)
            except OSError:
                return SKIPPED  # done earlier; the file is gone now, which is fine
            size = st.st_size if item.member is None else item.member.length  # a shard's member
            if replay.fingerprint_of(item.key) == fingerprint(size, st.st_mtime_ns):
                return SKIPPED
            if not self._reupload_changed:
                return Changed(item.key, item.line)
            # Changed and asked to upload it again: fall through to a fresh upload.
        previous = replay.unfinished.get(item.key)
        if previous is not None:
            if records.failed_before(previous):
                if not self._retry_failed:
                    return FailedBefore(item.key, item.line)
            elif self._finalize:
                landed = _landed_target(previous)
                if landed is not None:
                    return Resume(ToFinalize(item.key, item.line, landed, None, item))
        return item

    def _checked(self, item: Item) -> Triaged:
        """The verdict of an item the journal left to its file's check."""
        result = self._check(item)
        if isinstance(result, ManifestError):
            return Rejected(result, item.key)
        previous = self._replay.unfinished.get(item.key)
        if previous is not None:
            acquired = _acquired_target(previous, result)
            if acquired is not None:
                return Redo(result, acquired)
        return result


def source_of(verdict: Source | Redo) -> Source:
    """The source a verdict uploads: a `Redo`'s, or the verdict itself."""
    return verdict.source if isinstance(verdict, Redo) else verdict
