"""The one error tree of `ingest`.

Every error the library raises on purpose derives from `IngestError`. Context
travels in keyword fields, `str()` is one line, and no field ever holds a
secret: URLs are redacted before they are stored here.

    IngestError
     ├── ConfigError          bad settings or a missing key variable (before any work)
     ├── ManifestError        one bad manifest entry (line number, reason)
     ├── ExportError          done items that cannot go into a valid provider document
     ├── JournalError         the journal cannot be used as asked
     │    ├── JournalLocked   another run holds it
     │    ├── JournalMismatch it belongs to another manifest or provider
     │    └── JournalCorrupt  damage before the last line (line number)
     └── TransferError        one provider or storage operation failed;
                              carries an `Action` that tells the engine what to do
                              and a `Scope`: one item's problem, or the plane's pace

Adapters classify (they set `action` and `scope`); the engine decides, and
never reads an HTTP status itself. Cancellation is never wrapped in any of
these.
"""

from __future__ import annotations

import enum
import errno


class Action(enum.Enum):
    """What the engine should do about a failed operation."""

    RETRY = "retry"  # transient: back off and try the same step again
    RESIGN = "resign"  # the upload target is dead (expired): acquire a new one
    FAIL_ITEM = "fail_item"  # this item cannot succeed as it is: record and go on
    STOP = "stop"  # the run cannot succeed (bad key, no balance): stop cleanly


UNREACHABLE = "unreachable"  # `TransferError.code` of a connection that could not be opened
EXPIRED = "expired"  # `TransferError.code` of a RESIGN because the upload URL's time ran out


class Scope(enum.Enum):
    """What a refusal concerns, as the adapter that built the error knows it."""

    ITEM = "item"  # this call's item only: its retries back off, nobody else waits
    PLANE = "plane"  # the server's pace: slow and pause every call of this plane


def install_hint(extra: str) -> str:
    """How to install an optional extra, as the README's set-up installs ingest: from its
    checkout (``pip install .``), not by name from an index."""
    return f"pip install '.[{extra}]' in ingest's checkout"


class IngestError(Exception):
    """Root of every error `ingest` raises on purpose."""


class ConfigError(IngestError):
    """Invalid configuration: a bad key, a wrong type, a missing key variable."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class ManifestError(IngestError):
    """One manifest entry that cannot be used; the others go on.

    `key` names the entry where the reader knows it (a folder's image whose
    caption file cannot be used), so it is named by its path, not its place.
    """

    def __init__(
        self, reason: str, *, source: str, line: int | None = None, key: str | None = None
    ) -> None:
        self.reason = reason
        self.source = source
        self.line = line
        self.key = key
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {reason}")


class ExportError(IngestError):
    """Done items that no valid provider document can hold; `problems` says, per item, why."""

    def __init__(self, message: str, *, problems: tuple[str, ...]) -> None:
        self.problems = problems
        super().__init__(message)


class JournalError(IngestError):
    """The journal cannot be used as asked."""


class JournalLocked(JournalError):
    """Another run holds the journal's lock."""


class JournalMismatch(JournalError):
    """The journal was written for another manifest, provider or settings."""


class JournalCorrupt(JournalError):
    """A journal line before the last one cannot be read."""

    def __init__(self, message: str, *, path: str, line: int) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line}: {message}")


class TransferError(IngestError):
    """A provider or storage operation failed, classified by its adapter.

    `code` is a short machine-readable reason (the provider's error code, or a
    name of ours such as ``expired`` or ``network``); `message` is the server's
    human text with secrets already removed. `scope` is `PLANE` only for a
    refusal about pace (a rate limit's 429, a 503 with Retry-After): the engine
    then pauses every call of that plane for `retry_after` (capped); an `ITEM`
    refusal with a Retry-After delays only its own item's retry.
    """

    def __init__(
        self,
        message: str,
        *,
        action: Action,
        code: str,
        provider: str,
        op: str,
        status: int | None = None,
        retry_after: float | None = None,
        scope: Scope = Scope.ITEM,
    ) -> None:
        self.message = message
        self.action = action
        self.code = code
        self.provider = provider
        self.op = op
        self.status = status
        self.retry_after = retry_after
        self.scope = scope
        status_part = f" {status}" if status is not None else ""
        super().__init__(f"{provider} {op}{status_part} {code}: {message}")


# A write refused for want of room: a full disk, a quota, a file size limit (`ulimit -f`).
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def out_of_room(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a write refused for want of room: the machine's
    state, not the call's, so a run stops (`StopReason.JOURNAL`, exit 3) whether the
    journal's opening or a record mid-run met it."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _NO_ROOM:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
