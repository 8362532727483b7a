"""Read-ahead of small files: their bytes read while they are validated, in a byte budget.

Owns the read-ahead budget (`Prefetch`) and its give-back (`release`), and
one rule: a file of at most `max_file` bytes is read whole by the
validating thread (which has it open to sniff its type anyway) while the
bytes read ahead and not yet uploaded stay under `budget`; the worker that
uploads it then needs no thread hop of its own, which was the largest cost
per small file after the HTTP stack itself. Past the budget, files are read
at upload time as before, so memory stays bounded whatever the file sizes.

The bytes are those of the validated file (same size, read right after the
stat): what is uploaded matches the fingerprint the journal records.
Thread-safe: the reader thread takes, the event loop gives back. A `Source`
carrying bytes gives them back through `release` once they are no longer
needed: after its upload, or when it leaves unsent (refused by a later check,
dropped by a drain).
"""

from __future__ import annotations

import threading

from ingest.item import Source


class Prefetch:
    """A byte budget shared by the reader thread (take) and the workers (give back)."""

    __slots__ = ("_left", "_lock", "budget", "max_file")

    def __init__(self, budget: int = 16 << 20, max_file: int = 256 << 10) -> None:
        self.budget = budget
        self.max_file = max_file
        self._left = budget
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        """Reserve `size` bytes if the file is small and the budget allows; True if reserved."""
        if size > self.max_file:
            return False
        with self._lock:
            if size > self._left:
                return False
            self._left -= size
            return True

    def give_back(self, size: int) -> None:
        with self._lock:
            self._left += size

    @property
    def in_use(self) -> int:
        return self.budget - self._left


def release(source: Source, prefetch: Prefetch | None) -> Source:
    """`source` without its read-ahead bytes, given back to the budget."""
    if source.body is None or prefetch is None:
        return source
    prefetch.give_back(len(source.body))
    # Built field by field: `dataclasses.replace` walks the fields' metadata on every
    # call (~4 % of the engine's CPU per small file; 2.6 -> 0.5 µs a call).
    return Source(
        item=source.item,
        size=source.size,
        mtime_ns=source.mtime_ns,
        image_type=source.image_type,
        converted=source.converted,
        stream=source.stream,
    )
