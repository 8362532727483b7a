"""Test kit: what a library run's `Result` points at."""

from __future__ import annotations

from pathlib import Path

import ingest


def journal_of(result: ingest.Result) -> Path:
    """The journal of a run on a journal (a coordinated run has none: `journal` is None)."""
    assert result.journal is not None, "a coordinated run has no journal"
    return result.journal
