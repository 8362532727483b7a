"""Journal records for tests, built with the typed constructors the engine uses."""

from __future__ import annotations

from ingest.errors import Action
from ingest.journal.records import Record, acquired, completed, failed, rejected, uploaded


def record_of(kind: str, key: str) -> Record:
    """A well-formed record of `kind` ("acq", "up", "done", "fail", "bad") for `key`."""
    if kind == "acq":
        return acquired(key, "x")
    if kind == "up":
        return uploaded(key, "x", 1, 1)
    if kind == "done":
        return completed(key, "x", 1, 1)
    if kind == "fail":
        return failed(key, 1, Action.FAIL_ITEM, "x", "no")
    if kind == "bad":
        return rejected(1, "bad file", key)
    raise ValueError(f"no record kind {kind!r}")
