"""`export`: each done item of the manifest, as rows or the provider's document.

Owns what `ingest export` and `ingest.export` hand out: the remote ids of the
items the manifest (named in the journal header) lists as it is now, in its
order, with each item's path and caption. Items uploaded earlier that it no
longer lists are left out unless asked for (`include_removed`; then they
follow in journal order, flagged ``"removed": "true"``). When the manifest
cannot be read, every done item is listed in journal order, since the
removed ones cannot be told apart (`report.manifest_problem` says why, for
a warning). See `report` for why the manifest is read again rather than
journaled.

How it works: the journal is replayed first (damage is a `JournalError`
before anything is returned). `DoneIndex` then maps each key still done, by
its 64-bit digest, to the offset of its last `done` record (a `DigestSet`,
~23 bytes an item, instead of ~400 for the records themselves: flat at 10^6
items). Rows follow the manifest, each record read at its offset; the keys
not reached are the unlisted ones, found by one more pass over the journal.

Invariants: each done key is exported at most once, from its last `done`
record; without `include_removed`, only keys the manifest lists now.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, TypeAlias, cast, overload

import orjson

from ingest.digestset import DigestSet
from ingest.errors import ConfigError, ExportError, ManifestError
from ingest.item import Item
from ingest.journal.reader import key_digest, lines, replay
from ingest.journal.records import DoneRecord
from ingest.journal.report import manifest_entries

if TYPE_CHECKING:
    from ingest.providers.base import TrainingKind

ExportFormat: TypeAlias = Literal["rows", "provider"]
# One done item: "key", "remote_id", and where known "path", "url", "caption",
# then the provider's journaled extras (e.g. "order_id"); "removed": "true" on
# an item the manifest no longer lists (only with `include_removed`). Every
# value is a string.
ExportRow: TypeAlias = dict[str, str]


@overload
def export(
    journal: str | os.PathLike[str],
    format: Literal["rows"] = "rows",
    *,
    include_removed: bool = False,
) -> Iterator[ExportRow]: ...
@overload
def export(
    journal: str | os.PathLike[str],
    format: Literal["provider"],
    *,
    include_removed: bool = False,
    training: TrainingKind | None = None,
) -> list[Mapping[str, object]]: ...
def export(
    journal: str | os.PathLike[str],
    format: ExportFormat = "rows",
    *,
    include_removed: bool = False,
    training: TrainingKind | None = None,
) -> Iterator[ExportRow] | list[Mapping[str, object]]:
    """Each done item of the manifest: rows (lazily, in manifest order) or the provider's documents.

    ``"provider"`` gives the JSON documents the provider's next API calls
    want, built by its adapter: one (`export_document`), or, for an adapter
    class that `SplitsExport`, as many as its limits need (novita: the
    ``image_dataset_items`` of ``subject`` training, or ``style`` with
    `training`, at most 50 a task). Items no valid document can hold raise
    `ExportError`, naming each, rather than being cut or dropped.
    Items uploaded earlier that the manifest no longer lists are left out, or
    with `include_removed` follow (in journal order, flagged ``"removed"``).
    When the manifest cannot be read, every done item is listed, in journal
    order (`manifest_problem` says why). The journal is read and checked
    before this returns.
    """
    index = DoneIndex(Path(journal))
    rows = index.rows(include_removed)
    if format == "rows":
        if training is not None:
            raise ConfigError("training applies to the provider format only", key="training")
        return rows
    return documents(rows, index.header.provider, index.header.bind, training)


def documents(
    rows: Iterable[ExportRow],
    provider: str,
    bind: Mapping[str, str],
    training: TrainingKind | None = None,
) -> list[Mapping[str, object]]:
    """The provider's documents of `rows` (a journal's, or a shared run's: `ingest.coord`).

    One document (`export_document`), or, for an adapter class that
    `SplitsExport`, as many as its limits need; `bind` is the run's
    run-level values (a model or order id). Items no valid document can hold
    raise `ExportError`, naming each.
    """
    from ingest.providers import provider_class
    from ingest.providers.base import SplitsExport

    cls = provider_class(provider)
    if isinstance(cls, SplitsExport):
        split = cls.export_documents(list(rows), bind, training)
        if split.problems:
            count = len(split.problems)
            raise ExportError(
                f"{count} done item{'s' if count != 1 else ''} cannot go into a "
                f"{training or 'subject'} training document",
                problems=split.problems,
            )
        return list(split.documents)
    if training is not None:
        raise ConfigError(
            f"training kinds are novita's; {provider} exports one document", key="training"
        )
    return [cls.export_document(list(rows), bind)]


class DoneIndex:
    """Where the last `done` record of each key still done starts, by key digest (~23 bytes each)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        state = replay(path)  # validates the whole journal first
        self.header = state.header
        self._offsets = DigestSet(values=True)
        for _number, end, line, complete in lines(path):
            if complete and b'"done"' in line:
                rec = orjson.loads(line)
                if rec.get("s") == "done" and state.is_done(rec["k"]):
                    self._offsets.add(key_digest(rec["k"]), end - len(line) - 1)

    def rows(self, include_removed: bool) -> Iterator[ExportRow]:
        """Rows in manifest order, then (if asked, or without a manifest) the unlisted ones."""
        try:
            entries = manifest_entries(self.header, ordered=True)
        except ManifestError:
            return self._unlisted(flag=False)
        return self._listed(entries, include_removed)

    def _listed(
        self, entries: Iterator[Item | ManifestError], include_removed: bool
    ) -> Iterator[ExportRow]:
        offsets = self._offsets
        with self.path.open("rb") as fh:
            for entry in entries:
                if isinstance(entry, Item):
                    digest = key_digest(entry.key)
                    offset = offsets.get(digest)
                    if offset is not None:
                        offsets.discard(digest)
                        yield row(entry.key, _record_at(fh, offset), entry)
        if include_removed:
            yield from self._unlisted(flag=True)

    def _unlisted(self, *, flag: bool) -> Iterator[ExportRow]:
        """The rows of keys not exported yet, in journal order."""
        offsets = self._offsets
        for _number, end, line, complete in lines(self.path):
            if complete and b'"done"' in line:
                rec = orjson.loads(line)
                if rec.get("s") == "done" and offsets.get(key_digest(rec["k"])) == (
                    end - len(line) - 1
                ):
                    out = row(rec["k"], cast(DoneRecord, rec), None)
                    if flag:
                        out["removed"] = "true"
                    yield out


def _record_at(fh: IO[bytes], offset: int) -> DoneRecord:
    fh.seek(offset)
    return cast(DoneRecord, orjson.loads(fh.readline()))


def row(key: str, rec: DoneRecord, item: Item | None) -> ExportRow:
    """The export row of one journaled done item (`item`: its manifest entry, when listed)."""
    return make_row(key, rec["r"], rec.get("u"), rec.get("x"), item)


def make_row(
    key: str,
    remote_id: str,
    url: str | None,
    extra: Mapping[str, str] | None,
    item: Item | None,
) -> ExportRow:
    """The export row of one done item, wherever it is recorded (a journal, a shared run's
    record): key, path and caption from its manifest entry, when listed; its extras last."""
    out = {"key": key}
    if item is not None:
        out["path"] = item.where  # a shard member: shard.tar#member
    out["remote_id"] = remote_id
    if url:
        out["url"] = url
    if item is not None and item.caption:
        out["caption"] = item.caption
    out.update(extra or {})
    return out
