"""What a run would do, without doing it: the dry run behind `ingest run --dry-run`.

Owns `dry_run`: each manifest entry's fate (upload, skip as already done,
reject with the reason) from the manifest, the files and the journal, with
the same local checks a run applies. No API is called, no key is needed,
nothing is written (the journal is only read, if it exists).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ingest.api.wiring import Plan
    from ingest.errors import ManifestError

Fate = Literal["upload", "skip", "reject"]


@dataclass(frozen=True, slots=True)
class Planned:
    """One manifest entry as a run would treat it."""

    fate: Fate
    key: str | None  # None: a line without a usable key
    line: int | None
    size: int = 0  # bytes to upload (fate "upload")
    error: ManifestError | None = None  # why (fate "reject")


def dry_run(plan: Plan) -> Iterator[Planned]:
    """Each entry of the plan's manifest, in order, with its fate."""
    from ingest.errors import ManifestError
    from ingest.item import Source
    from ingest.journal import replay
    from ingest.manifest import read_manifest
    from ingest.validate import Checker

    state = replay(plan.journal) if plan.journal.exists() else None
    checker = Checker(plan.cls.capabilities(plan.provider_settings), plan.provider)
    for entry in read_manifest(plan.manifest, plan.format):
        if isinstance(entry, ManifestError):
            yield Planned("reject", None, entry.line, error=entry)
        elif state is not None and state.is_done(entry.key):
            yield Planned("skip", entry.key, entry.line)
        else:
            checked = checker(entry)
            if isinstance(checked, Source):
                yield Planned("upload", entry.key, entry.line, size=checked.size)
            else:
                yield Planned("reject", entry.key, entry.line, error=checked)
