"""What a journal reports: `status` (counts by state, next steps) and `failures` (each problem).

Owns the values `ingest status` and `ingest status --failed` print, as
library calls that print nothing (the CLI renders them; `ingest.status` and
`ingest.failures` return them), and the re-reading of the manifest they and
`exporting.export` share.

Counted against the current manifest. A journal names every item any run
wrote a record for; the manifest (or folder) may have lost entries since (a
user prunes bad images after a first upload). So status, failures and export
read the manifest named in the header again, as it is now, and count or list
only the keys it lists: an item uploaded earlier that it no longer lists is
`removed` (reported, never in `done`, left out of `export` unless asked
for), and no count exceeds `total`. This was chosen over journaling the keys
each run reads because it needs no per-key records and no memory per
manifest entry: the replay already keeps done keys as 64-bit digests and the
manifest streams past them (a status at 10^6 items holds the replay's
~17 MiB and a few counters). It also reflects edits made since the last run,
and the run itself needs only counters for the same figures (`ingest.tally`).
Reading a manifest of 10^6 entries again costs several times a replay, so
`status` skips it when the journal already holds the answer: the latest run
read the manifest to its end, that read found no unfinished item missing,
and the file is unchanged since (its `end` record names the file by device,
inode, size and mtime; a folder is always read again).

When the manifest cannot be read (moved, deleted, unreadable), the journal is
all there is: `status` gives the journal's counts as of its latest full read
(each run's `end` record counts what that read no longer listed) and says why
in `manifest_problem`; `failures` lists every failure and rejection the
journal holds; `export` lists every done item (it cannot tell which were
removed) and `manifest_problem(journal)` lets a caller warn about that.

How it works: each call replays the journal first, so damage is a
`JournalError` before anything is returned, then streams the manifest past
the replay: an entry is done if its key's digest is, else in the state of
its key's last record, else not started; a manifest line that is not an
entry counts as rejected.

Invariants:
- Every state comes from the journal's records, read through `records`.
- `done + failed + rejected + in_flight + not_started == total` whenever
  the manifest could be read.
- A problem is grouped by its cause without paths (`ingest.reasons.group`),
  never by text cut at a width.
- A path that is not a readable journal is one `JournalError` line, never an
  `OSError`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson

from ingest.errors import ManifestError
from ingest.item import Item
from ingest.journal.header import Header
from ingest.journal.reader import Replay, lines, replay
from ingest.journal.records import (
    BadRecord,
    FailAction,
    FailRecord,
    count_of,
    decode,
)
from ingest.reasons import group


def plural(n: int, one: str, many: str | None = None) -> str:
    """`n` and the word for it: "1 item", "2 items"."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def removed_note(n: int) -> str:
    """The line that reports items uploaded earlier that the manifest no longer lists."""
    verb, them = ("is", "it") if n == 1 else ("are", "them")
    return (
        f"{plural(n, 'item')} uploaded earlier {verb} no longer in the manifest: "
        f"`ingest export` leaves {them} out (--include-removed lists {them})"
    )


def changed_note(n: int) -> str:
    """The line that reports done items whose file the latest run found changed since upload."""
    return (
        f"{plural(n, 'file')} changed since upload, as the latest run found: the earlier "
        "upload is kept (`ingest export` lists it); `ingest run --reupload-changed` uploads "
        f"{'it' if n == 1 else 'them'} again"
    )


@dataclass(frozen=True, slots=True)
class JournalStatus:
    """What a journal records about the manifest's items: counts by state, problems, next steps."""

    journal: Path
    provider: str
    manifest: str
    runs: int
    total: int | None  # entries of the manifest (None: it cannot be read and no read ended)
    done: int
    failed: int
    rejected: int
    in_flight: int  # started and not finished (the run stopped or goes on)
    torn_tail: bool  # the last record was cut short (the next run cuts it off)
    problems: Mapping[str, int]  # "action/code" (or "rejected/group") -> items, most first
    not_started: int = 0  # entries no run has reached yet
    removed: int = 0  # uploaded earlier, no longer in the manifest (not in `done`)
    failed_item: int = 0  # of `failed`, refused for good (`fail_item`): a rerun leaves them
    manifest_problem: str | None = None  # why the manifest cannot be read (counts: the journal's)
    endpoint: str | None = None  # "emulator" or the base URL it was made against (None: unrecorded)
    changed: int = 0  # of `done`, files the latest full read found changed since upload

    @property
    def complete(self) -> bool:
        """Every manifest entry is done, and no file the latest run read changed since upload.

        A run that meets a changed file keeps its earlier upload and exits 1, so
        `status` says so too; a file changed after the latest run is found by the
        next run (`status` reads no image).
        """
        return self.total is not None and self.done == self.total and not self.changed

    def next_steps(self) -> tuple[str, ...]:
        """What would get the rest done, one line each (empty when complete)."""
        steps: list[str] = []
        if self.manifest_problem is not None:
            steps.append(
                f"the manifest cannot be read ({self.manifest_problem}), so these are the "
                "journal's counts as of the last run that read it to the end"
            )
        if self.complete:
            return tuple(steps)
        resumable = self.not_started + self.in_flight + self.failed - self.failed_item
        if resumable or self.total is None:
            what = f"{plural(resumable, 'item')} not done yet" if resumable else "not read yet"
            steps.append(f"{what}: run the same `ingest run` command to resume")
        listing = f"`ingest status --failed {self.journal}` lists them"
        if self.failed_item:
            steps.append(
                f"{plural(self.failed_item, 'item')} refused by the provider, which a rerun "
                f"does not retry ({listing}): fix them, then run "
                f"`ingest retry-failed {self.journal}`"
            )
        if self.rejected:
            steps.append(
                f"{plural(self.rejected, 'item')} rejected locally, which a rerun rejects "
                f"again ({listing}): fix or remove them in the manifest, then rerun"
            )
        if self.changed:
            steps.append(changed_note(self.changed))
        return tuple(steps)

    def to_json(self) -> dict[str, object]:
        """What ``ingest status --json`` prints."""
        return {
            "journal": str(self.journal),
            "provider": self.provider,
            "manifest": self.manifest,
            "endpoint": self.endpoint,
            "runs": self.runs,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "rejected": self.rejected,
            "in_flight": self.in_flight,
            "not_started": self.not_started,
            "removed": self.removed,
            "failed_item": self.failed_item,
            "changed": self.changed,
            "complete": self.complete,
            "torn_tail": self.torn_tail,
            "problems": dict(self.problems),
            "manifest_problem": self.manifest_problem,
            "next_steps": list(self.next_steps()),
        }


def _problem_of(rec: FailRecord | BadRecord) -> str:
    """The `problems` key of an unfinished record."""
    if rec["s"] == "fail":
        return f"{rec['a']}/{rec['c'] or group(rec['e'])}"
    return f"rejected/{group(rec['e'])}"


def status(journal: str | os.PathLike[str]) -> JournalStatus:
    """The state of the manifest's items per `journal` (safe to call while the run goes on)."""
    path = Path(journal)
    state = replay(path)
    if _read_as_it_is(state):
        return _from_journal(path, state, None)
    counts = dict.fromkeys(("done", "failed", "rejected", "in_flight", "not_started"), 0)
    reasons: Counter[str] = Counter()
    failed_item = entries = 0
    try:
        for entry in manifest_entries(state.header):
            entries += 1
            if isinstance(entry, ManifestError):
                counts["rejected"] += 1
                reasons[f"rejected/{group(entry.reason)}"] += 1
                continue
            if state.is_done(entry.key):
                counts["done"] += 1
                continue
            rec = state.unfinished.get(entry.key)
            if rec is None:
                counts["not_started"] += 1
                continue
            counts[count_of(rec["s"])] += 1
            if rec["s"] == "fail" or rec["s"] == "bad":
                reasons[_problem_of(rec)] += 1
                failed_item += rec["s"] == "fail" and rec["a"] == "fail_item"
    except (ManifestError, OSError) as exc:  # the journal alone, as of its latest full read
        return _from_journal(path, state, _unreadable(exc))
    return _status(
        path, state, entries, counts, len(state.done) - counts["done"], failed_item, reasons
    )


def _read_as_it_is(state: Replay) -> bool:
    """The latest run read the manifest to its end, it lists every unfinished key, and it is
    unchanged since: the journal's counts are then exactly the manifest's, with no re-read."""
    from ingest.tally import manifest_identity

    return (
        state.read_to_end
        and state.manifest_id is not None
        and not any(n for name, n in state.gone.items() if name != "done")
        and manifest_identity(state.header.manifest) == state.manifest_id
    )


def _from_journal(path: Path, state: Replay, problem: str | None) -> JournalStatus:
    """The journal's counts, as of its latest full read (exact when `_read_as_it_is`)."""
    counts = {**state.counts(), "not_started": 0}
    total = state.total if state.read_to_end else None
    if total is not None:
        counts["not_started"] = max(0, total - sum(counts.values()))
    reasons: Counter[str] = Counter()
    failed_item = 0
    for rec in state.unfinished.values():
        if rec["s"] == "fail" or rec["s"] == "bad":
            reasons[_problem_of(rec)] += 1
            failed_item += rec["s"] == "fail" and rec["a"] == "fail_item"
    if state.bad_lines:
        reasons.update(_problem_of(rec) for rec in _keyless_rejections(path))
    return _status(path, state, total, counts, state.removed, failed_item, reasons, problem)


def _status(
    path: Path,
    state: Replay,
    total: int | None,
    counts: Mapping[str, int],
    removed: int,
    failed_item: int,
    reasons: Counter[str],
    problem: str | None = None,
) -> JournalStatus:
    return JournalStatus(
        journal=path,
        provider=state.header.provider,
        manifest=state.header.manifest,
        runs=state.runs,
        total=total,
        done=counts["done"],
        failed=counts["failed"],
        rejected=counts["rejected"],
        in_flight=counts["in_flight"],
        not_started=counts["not_started"],
        removed=removed,
        failed_item=min(failed_item, counts["failed"]),
        torn_tail=state.torn_tail,
        problems=dict(reasons.most_common()),
        manifest_problem=problem,
        endpoint=state.header.endpoint,
        changed=min(state.changed, counts["done"]),
    )


# -- the manifest as it is now ------------------------------------------------


def manifest_entries(
    header: Header, *, ordered: bool = False
) -> Generator[Item | ManifestError, None, None]:
    """The entries of the manifest `header` names, read again; `ManifestError` if it cannot be
    (`ordered`: in line order, as listings show them; `read_manifest`)."""
    from ingest.manifest import read_manifest
    from ingest.manifest.probe import FORMATS

    fmt = header.bind.get("format")
    return read_manifest(Path(header.manifest), fmt if fmt in FORMATS else None, ordered=ordered)


def _unreadable(exc: ManifestError | OSError) -> str:
    if isinstance(exc, ManifestError):
        return exc.reason
    return exc.strerror or str(exc)


def manifest_problem(journal: str | os.PathLike[str]) -> str | None:
    """Why the manifest `journal` names cannot be read now, or None when it can."""
    from ingest.journal.reader import peek_header

    header = peek_header(Path(journal))
    if header is None:
        return None
    try:
        manifest_entries(header).close()
    except (ManifestError, OSError) as exc:
        return _unreadable(exc)
    return None


# -- each problem -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    """One item that failed at the provider (`fail`) or was rejected locally (`bad`)."""

    key: str | None  # None: a manifest line without a usable key
    line: int | None
    kind: Literal["fail", "bad"]
    code: str  # fail: the error's code; bad: the reason's group (`ingest.reasons.group`)
    reason: str
    action: FailAction | None = None  # fail: "retry", "resign" or "fail_item"

    def to_json(self) -> dict[str, object]:
        """One line of ``ingest status --failed --json``."""
        return {
            "key": self.key,
            "line": self.line,
            "class": self.kind,
            "action": self.action,
            "code": self.code,
            "reason": self.reason,
        }


def _failure(rec: FailRecord | BadRecord) -> Failure:
    if rec["s"] == "fail":
        return Failure(rec["k"], rec["l"], "fail", rec["c"] or group(rec["e"]), rec["e"], rec["a"])
    return Failure(rec.get("k"), rec["l"], "bad", group(rec["e"]), rec["e"])


def failures(journal: str | os.PathLike[str]) -> Iterator[Failure]:
    """Every failed and rejected item of the manifest per `journal`, lazily, in manifest order.

    The journal is read and checked before this returns. When the manifest
    cannot be read, every failed and rejected item the journal holds, in
    journal order. `ingest status --failed` prints these.
    """
    path = Path(journal)
    state = replay(path)
    try:
        entries = manifest_entries(state.header, ordered=True)
    except ManifestError:
        return _journal_failures(path, state)
    return _listed_failures(entries, state)


def _listed_failures(entries: Iterator[Item | ManifestError], state: Replay) -> Iterator[Failure]:
    for entry in entries:
        if isinstance(entry, ManifestError):
            yield Failure(None, entry.line, "bad", group(entry.reason), entry.reason)
            continue
        rec = state.unfinished.get(entry.key)
        if rec is not None and (rec["s"] == "fail" or rec["s"] == "bad"):
            yield _failure(rec)


def _journal_failures(path: Path, state: Replay) -> Iterator[Failure]:
    keyed = [rec for rec in state.unfinished.values() if rec["s"] == "fail" or rec["s"] == "bad"]
    yield from (_failure(rec) for rec in keyed)
    yield from (_failure(rec) for rec in _keyless_rejections(path))


def _keyless_rejections(path: Path) -> list[BadRecord]:
    """The latest run's rejected manifest lines without a key (a replay only counts them)."""
    keyless: list[BadRecord] = []
    for number, _end, line, complete in lines(path):
        if number == 1 or not complete or not (b'"bad"' in line or b'"run"' in line):
            continue
        rec = decode(orjson.loads(line), path=path, line=number)
        if rec["s"] == "run":
            keyless.clear()
        elif rec["s"] == "bad" and "k" not in rec:
            keyless.append(rec)
    return keyless
