"""What a run would do, without doing it: the dry run behind `ingest run --dry-run`.

Owns `dry_run`: each manifest entry's fate from the manifest, the files and
the journal. The verdicts are the engine's own (`engine.triage.Triage`, the
same journal reading and local checks a run applies), mapped to a `Fate`, so
the preview and the run cannot disagree. No API is called, no key is needed,
nothing is written (the journal is only read, if it exists).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ingest.api.wiring import Plan
    from ingest.engine.triage import Triaged
    from ingest.errors import ManifestError

# upload: sent (new, unfinished, or changed with `reupload_changed`); finalize: its bytes
# landed earlier, only finalize is left; skip: done earlier; changed: done earlier but its
# file changed since, left as it is; failed: refused by the provider earlier, left failed
# (`retry_failed` retries it); reject: a bad entry or a failed local check.
Fate = Literal["upload", "finalize", "skip", "changed", "failed", "reject"]


@dataclass(frozen=True, slots=True)
class Planned:
    """One manifest entry as a run would treat it."""

    fate: Fate
    key: str | None  # None: a line without a usable key
    line: int | None
    size: int = 0  # bytes to upload (fate "upload")
    error: ManifestError | None = None  # why (fate "reject")


def dry_run(
    plan: Plan, *, retry_failed: bool = False, reupload_changed: bool = False
) -> Iterator[Planned]:
    """Each entry of the plan's manifest, in order, with the fate a run would give it."""
    from ingest.engine.triage import Triage
    from ingest.journal import Header, Replay, replay
    from ingest.manifest import read_manifest
    from ingest.validate import Checker

    if plan.journal.exists():
        state = replay(plan.journal, fingerprints=True)
    else:
        state = Replay(header=Header(plan.provider, str(plan.manifest)), fingerprints=True)
    caps = plan.cls.capabilities(plan.provider_settings)
    checked = caps
    if plan.run.convert:  # as the run checks (`ingest.preparing`): every type it converts passes
        from ingest.convert import accepting

        checked = accepting(caps)
    triage = Triage(
        state,
        Checker(checked, plan.provider),
        finalize=caps.finalize,
        retry_failed=retry_failed,
        reupload_changed=reupload_changed,
    )
    entries = read_manifest(plan.manifest, plan.format)
    try:
        for entry in entries:
            key = entry.key  # a reader's problem may name its entry too
            yield _planned(triage(entry), key, entry.line)
    finally:
        entries.close()


def _planned(verdict: Triaged, key: str | None, line: int | None) -> Planned:
    """The fate of the engine's verdict on the entry `key` at `line`."""
    from ingest.engine.triage import Changed, FailedBefore, Redo, Rejected, Resume, Skipped
    from ingest.item import Source

    match verdict:
        case Source(size=size) | Redo(Source(size=size)):
            return Planned("upload", key, line, size=size)
        case Resume():
            return Planned("finalize", key, line)
        case Skipped():
            return Planned("skip", key, line)
        case Changed():
            return Planned("changed", key, line)
        case FailedBefore():
            return Planned("failed", key, line)
        case Rejected(error):
            return Planned("reject", key, line, error=error)
