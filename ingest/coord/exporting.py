"""`export` of a shared run: each done item of its record, by the manifest as it is now.

Owns what `ingest export --coordinator URL --run-name NAME` hands out: the
rows and provider documents a journal's export gives for the same run
(one row per done item, in manifest order: key, path, remote id, url,
caption, extras; `journal.exporting.make_row` and `documents` make both),
derived only from the run's record (the shared journal: key, remote id, url
and extras by manifest line) and the current manifest, which gives each row
its path and caption by line.

How it works: `read_run` reads the plan (the binding) and every done line's
record, by pages, kept as its JSON text until its row is made. `check` then
makes sure the manifest holds the entries the run was planned with: the
planner's very file (`plan.fingerprint`: ~1 ms a MiB), else, in one read,
the key the record holds at every done line and as many entries as the
plan (not the binding's digest: its order follows the manifest reader's
held entries, which vary by process: see `manifest.dedupe`). Another
manifest is refused (`ManifestMismatch`) rather than lending its paths and
captions to the run's remote ids; one that cannot be read gives the rows
without path or caption, in line order, as a journal's export does (the
reason is returned, for a warning).

Invariants: each done line is exported once, from the record's first record
of it; a row's path and caption come from the entry of its own line, whose
key is the record's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ingest.coord.names import RunKeys
from ingest.errors import ConfigError, ManifestError
from ingest.item import Item
from ingest.journal.exporting import ExportRow, make_row
from ingest.manifest.seenkeys import Duplicates

if TYPE_CHECKING:
    from ingest.coord.connection import Connection
    from ingest.manifest import ManifestFormat

PAGE = 256  # result batches read in one LRANGE (each holds up to record.BATCH records)


class ManifestMismatch(ConfigError):
    """The manifest given for a shared run's export holds other entries than the run's."""


@dataclass(frozen=True, slots=True)
class SharedRun:
    """What the coordinator holds of a run for its export."""

    name: str
    plan: Mapping[str, Any]  # the binding as stored (`plan.binding`)
    done: Mapping[int, str]  # manifest line -> its done record (JSON text)
    source: Path | None  # where the planning worker read the manifest (None: not recorded)
    # The plan's duplicate lines: the manifest is read in line order (`seenkeys.Duplicates`).
    duplicates: Duplicates = field(default_factory=Duplicates)

    @property
    def entries(self) -> int:
        return int(self.plan["entries"])

    @property
    def provider(self) -> str:
        return str(self.plan["provider"])

    @property
    def bind(self) -> dict[str, str]:
        return dict(self.plan.get("bind") or {})


async def read_run(conn: Connection, keys: RunKeys) -> SharedRun | None:
    """The run `keys.name` as its export needs it, or None if nobody planned it."""
    from ingest.coord.plan import read_plan
    from ingest.coord.record import Record

    plan = await read_plan(conn, keys)
    if plan is None:
        return None
    done = await Record(conn, keys).done_texts(PAGE)
    source: str | None = await conn.call(lambda: conn.client.get(keys.source))
    dups: str | None = await conn.call(lambda: conn.client.get(keys.duplicates))
    known = Duplicates.parse(dups or "")
    return SharedRun(keys.name, plan, done, Path(source) if source else None, known)


def manifest_format(run: SharedRun) -> ManifestFormat | None:
    """The manifest's format as the run's plan records it (`--format` when the planner was given
    one; None: by its name, as the run read it)."""
    from ingest.manifest.probe import FORMATS

    fmt = run.plan.get("manifest_format")
    return next((f for f in FORMATS if f == fmt), None)


def check(run: SharedRun, manifest: Path) -> str | None:
    """None when `manifest` holds the run's entries; why it cannot be read, if it cannot.

    `ManifestMismatch` when it holds other entries: another key at a done line,
    or another number of entries than the run was planned with (blocking: one
    full read, unless it is the planner's very file)."""
    from ingest.coord.plan import fingerprint
    from ingest.manifest import read_manifest

    fmt = manifest_format(run)
    try:
        if run.plan.get("fingerprint") and fingerprint(manifest, fmt) == run.plan["fingerprint"]:
            return None
        entries = read_manifest(manifest, fmt)
    except ManifestError as exc:
        return exc.reason
    except OSError as exc:
        return exc.strerror or str(exc)
    counted = 0
    try:
        for entry in entries:
            if entry.line is None:
                continue  # not a line's entry: the plan did not count it either
            counted += 1
            if (text := run.done.get(entry.line)) is None:
                continue
            uploaded = str(orjson.loads(text)["k"])
            if not isinstance(entry, Item) or entry.key != uploaded:
                there = repr(entry.key) if isinstance(entry, Item) else "no entry"
                raise _mismatch(run, f"{manifest}:{entry.line} holds {there} where run "
                                     f"{run.name!r} uploaded {uploaded!r}")  # fmt: skip
    finally:
        entries.close()
    if counted != run.entries:
        raise _mismatch(run, f"{manifest} holds {counted} entries, run {run.name!r} {run.entries}")
    return None


def _mismatch(run: SharedRun, what: str) -> ManifestMismatch:
    return ManifestMismatch(
        f"{what}: give --manifest PATH the manifest the run was planned with (the export "
        "reads each item's path and caption from it)"
    )


def rows(run: SharedRun, manifest: Path | None, include_removed: bool) -> Iterator[ExportRow]:
    """The run's rows: in the order of `manifest` (checked by `check`), then, if asked, the
    done lines it does not list (flagged "removed"); without a manifest, every done
    line in line order, without path or caption."""
    if manifest is None:
        yield from _unlisted(run.done, flag=False)
        return
    from ingest.manifest import read_manifest

    left = dict(run.done)
    entries = read_manifest(manifest, manifest_format(run), duplicates=run.duplicates)
    try:
        for entry in entries:
            if isinstance(entry, Item) and (text := left.pop(entry.line, None)) is not None:
                yield _row(orjson.loads(text), entry)
    finally:
        entries.close()
    if include_removed:
        yield from _unlisted(left, flag=True)


def _unlisted(done: Mapping[int, str], *, flag: bool) -> Iterator[ExportRow]:
    for line in sorted(done):
        out = _row(orjson.loads(done[line]), None)
        if flag:
            out["removed"] = "true"
        yield out


def _row(rec: Mapping[str, Any], item: Item | None) -> ExportRow:
    """A record's row (`record.Shipper.item_done` wrote it: k, line, id, url?, size, extra?)."""
    extra = rec.get("extra")
    return make_row(str(rec["k"]), str(rec["id"]), rec.get("url"), extra, item)
