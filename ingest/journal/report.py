"""What a journal reports: `status` (counts by state) and `export` (each done item).

Owns the values `ingest status` and `ingest export` print, as library calls
that print nothing: the CLI renders them, and `ingest.status` / `ingest.export`
return them.

How it works: both replay the journal first (so damage is a `JournalError`
before anything is returned). `status` counts from the replay. `export`
reads the journal once more for the last `done` record of every key still
done, then follows the manifest named in the header (when it is still
readable) to order the rows and add each item's path and caption; keys the
manifest no longer has follow, in journal order.

Invariants:
- Every count comes from the journal's records, read through `records`.
- A path that is not a readable journal is one `JournalError` line, never an
  `OSError`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias, overload

import orjson

from ingest.journal.reader import lines, replay
from ingest.journal.records import DoneRecord, Header, decode

ExportFormat: TypeAlias = Literal["rows", "provider"]
# One done item: "key", "remote_id", and where known "path", "url", "caption",
# then the provider's journaled extras (e.g. "order_id"). Every value is a string.
ExportRow: TypeAlias = dict[str, str]


@dataclass(frozen=True, slots=True)
class JournalStatus:
    """What a journal records: its binding, item counts by state and the reasons of failures."""

    journal: Path
    provider: str
    manifest: str
    runs: int
    total: int | None  # manifest entries, once a run has read the manifest to its end
    done: int
    failed: int
    rejected: int
    in_flight: int  # started and not finished (the run stopped or goes on)
    torn_tail: bool  # the last record was cut short (the next run cuts it off)
    problems: Mapping[str, int]  # "action/code" (or "rejected/reason") -> items, most first

    @property
    def complete(self) -> bool:
        """Every manifest entry is done."""
        return self.total is not None and self.done == self.total

    def to_json(self) -> dict[str, object]:
        """What ``ingest status --json`` prints."""
        return {
            "journal": str(self.journal),
            "provider": self.provider,
            "manifest": self.manifest,
            "runs": self.runs,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "rejected": self.rejected,
            "in_flight": self.in_flight,
            "complete": self.complete,
            "torn_tail": self.torn_tail,
            "problems": dict(self.problems),
        }


def status(journal: str | os.PathLike[str]) -> JournalStatus:
    """The state of the run recorded in `journal` (safe to call while the run goes on)."""
    path = Path(journal)
    state = replay(path)
    reasons: Counter[str] = Counter()
    for rec in state.unfinished.values():
        if rec["s"] == "fail":
            reasons[f"{rec['a']}/{rec['c'] or rec['e'][:60]}"] += 1
        elif rec["s"] == "bad":
            reasons[f"rejected/{rec['e'][:60]}"] += 1
    counts = state.counts()
    return JournalStatus(
        journal=path,
        provider=state.header.provider,
        manifest=state.header.manifest,
        runs=state.runs,
        total=state.total,
        done=counts["done"],
        failed=counts["failed"],
        rejected=counts["rejected"],
        in_flight=counts["in_flight"],
        torn_tail=state.torn_tail,
        problems=dict(reasons.most_common()),
    )


@overload
def export(
    journal: str | os.PathLike[str], format: Literal["rows"] = "rows"
) -> Iterator[ExportRow]: ...
@overload
def export(journal: str | os.PathLike[str], format: Literal["provider"]) -> object: ...
def export(journal: str | os.PathLike[str], format: ExportFormat = "rows") -> object:
    """Each done item of `journal`: rows (lazily, in manifest order) or the provider's document.

    ``"provider"`` gives the JSON document the provider's next API call wants
    (novita: ``image_dataset_items``), built by its adapter's `export_document`.
    The journal is read and checked before this returns.
    """
    header, records = done_records(Path(journal))
    rows = export_rows(header, records)
    if format == "rows":
        return rows
    from ingest.providers import provider_class

    document: object = provider_class(header.provider).export_document(list(rows), header.bind)
    return document


def done_records(path: Path) -> tuple[Header, dict[str, DoneRecord]]:
    """The journal's header and the last `done` record of each key still done."""
    state = replay(path)  # validates the whole journal first
    out: dict[str, DoneRecord] = {}
    for number, _end, line, complete in lines(path):
        if number == 1 or not complete:
            continue
        rec = decode(orjson.loads(line), path=path, line=number)
        if rec["s"] == "done" and state.is_done(rec["k"]):
            out[rec["k"]] = rec
    return state.header, out


def export_rows(header: Header, records: Mapping[str, DoneRecord]) -> Iterator[ExportRow]:
    """Export rows in manifest order (journal order for keys the manifest no longer has)."""
    from ingest.errors import ManifestError
    from ingest.item import Item
    from ingest.manifest import read_manifest

    def row(key: str, rec: DoneRecord, item: Item | None) -> ExportRow:
        out = {"key": key}
        if item is not None:
            out["path"] = str(item.path)
        out["remote_id"] = rec["r"]
        if rec.get("u"):
            out["url"] = rec["u"]
        if item is not None and item.caption:
            out["caption"] = item.caption
        out.update(rec.get("x") or {})
        return out

    pending = dict(records)
    try:
        for entry in read_manifest(Path(header.manifest)):
            if isinstance(entry, Item) and entry.key in pending:
                yield row(entry.key, pending.pop(entry.key), entry)
    except ManifestError:
        pass  # the manifest moved or changed: the journal alone still names every item
    for key, rec in pending.items():
        yield row(key, rec, None)
