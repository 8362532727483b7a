"""Progress events of a run, for displays, logs and callers of the library.

Owns `Observer`: the per-item events the engine reports as they happen.
Implement all four methods, or subclass `Observer` and override the ones you
need (the others do nothing). Events are called on the event loop's thread,
between the engine's steps: keep them quick and never block. An exception
raised in an event stops the run as `abort` does (items in flight are redone
by the next run) and is raised, as itself, by `Upload.wait` and `upload`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ingest.errors import ManifestError, TransferError
    from ingest.item import Source
    from ingest.providers.base import Landed


class Observer(Protocol):
    """Per-item events of a run (each a no-op unless overridden)."""

    def item_done(self, source: Source, landed: Landed) -> None:
        """`source` landed at the provider as `landed` (and is journaled done)."""
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
