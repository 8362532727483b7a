"""`read_manifest`: a manifest file or a folder in, a stream of `Item`s and errors out.

Owns the order of the steps: choose the format, check the manifest as a
whole (`probe`), then hand back a lazy reader of that format, with duplicate
keys settled across the whole manifest (`dedupe`) for every format but a
folder (whose keys are distinct paths) and a shard (distinct member names),
and one item per file for entries keyed by their path, folders included
(`dedupe.one_per_file`); and `refuse_empty`, the same checks and at least
one entry (what a run and `validate` require: nothing to upload is refused).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.errors import ManifestError
from ingest.item import Item
from ingest.manifest.dedupe import deduplicated, estimate_entries, one_per_file
from ingest.manifest.probe import FORMATS, ManifestFormat, manifest_format, probe_file, probe_folder

if TYPE_CHECKING:
    from ingest.manifest.folder import WalkStats
    from ingest.manifest.seenkeys import Duplicates


def read_manifest(
    path: Path,
    fmt: ManifestFormat | None = None,
    *,
    walk: WalkStats | None = None,
    duplicates: Duplicates | None = None,
    ordered: bool = False,
) -> Generator[Item | ManifestError, None, None]:
    """Stream the entries of the manifest (or folder) at `path`, in order.

    `fmt` overrides the choice by suffix (the CLI's ``--format``). Raises
    `ManifestError` now if the manifest as a whole cannot be read; after that,
    a bad entry is yielded as a `ManifestError` and the next entry follows.
    The file stays open until the generator is exhausted or closed. A folder's
    walk counts what it skipped in `walk`, when given. With `duplicates` (what an
    earlier read of this manifest found: a coordinated run's plan), entries come
    in line order in one pass (`dedupe`); `ordered`, in line order without them, in the
    passes a read takes anyway (without: an entry held to be checked for a duplicate key
    comes after the others).
    """
    source = str(path)
    if fmt is None:
        fmt = manifest_format(path)
    elif fmt not in FORMATS:
        raise ManifestError(
            f"unknown manifest format {fmt!r}; use one of {', '.join(FORMATS)}", source=source
        )
    # Each format's reader is imported only by a run of that format (start-up time).
    if fmt == "folder":
        from ingest.manifest.folder import read_folder

        probe_folder(path, source)
        return one_per_file(read_folder(path, source, walk), source, by_path=lambda item: True)
    if fmt == "parquet":  # one item per row; pyarrow, an optional extra
        from ingest.manifest.packed.parquet import probe_parquet, read_parquet

        probe_parquet(path, source)
        return read_parquet(Path(os.path.abspath(path)), source, path.name, walk)
    if fmt in ("tar", "zip"):  # a shard: its keys are distinct member names
        from ingest.manifest.packed import probe_shard, read_shard

        probe_shard(source, fmt)  # a shard that cannot be listed: raised now
        # Its items name the shard by its absolute path, as a folder's name their files.
        return read_shard(Path(os.path.abspath(path)), fmt, source, path.name, walk)
    probe_file(path, source, fmt)
    base = os.path.dirname(os.path.abspath(path))
    if fmt == "jsonl":
        from ingest.manifest.jsonl import read_jsonl as reader
    elif fmt == "csv":
        from ingest.manifest.csvfile import read_csv as reader
    else:
        from ingest.manifest.pathlist import read_list as reader
    entries = deduplicated(
        lambda seen: reader(path, source, base, seen),
        path,
        source,
        estimate_entries(path),
        None if duplicates is None else duplicates.check(),
        ordered=ordered,
    )
    return one_per_file(entries, source, by_path=_keyed_by_path)


# Why a manifest file of no entry holds nothing to upload, by format.
_NO_ENTRY: dict[str, str] = {
    "jsonl": "no entries (the file is empty or holds only blank lines)",
    "csv": "no entries (no row below the header)",
    "list": "no entries (the file is empty or holds only blank lines and # comments)",
}


def refuse_empty(path: Path, fmt: ManifestFormat | None = None) -> Item | ManifestError:
    """Check the manifest as `read_manifest` does, and that it holds at least one entry: the
    first, returned (a run's start checks what its source needs: boto3 for s3://).

    Raises `ManifestError` when it cannot be read, or when it holds nothing to
    upload: a file of no entry, a folder (or shard, or Parquet file) of no
    image. Reads up to the first entry only (a bad entry counts: it is the
    run's problem to report). Empty input is refused before anything is
    written, as a bad manifest is (exit 2), whatever its format.
    """
    entries = read_manifest(path, fmt)
    try:
        first = next(entries, None)
    finally:
        entries.close()
    if first is None:
        why = _NO_ENTRY.get(fmt or manifest_format(path), "no entries")
        raise ManifestError(f"{why}: nothing to upload", source=str(path))
    # Only a walk (a folder, shard, Parquet file) makes a NoImages, and it imports walkstats
    # (two dataclasses, ~4 ms of a plain run's start-up when imported here for this check).
    walkstats = sys.modules.get("ingest.manifest.walkstats")
    if walkstats is not None and isinstance(first, walkstats.NoImages):
        raise ManifestError(f"{first.reason}: nothing to upload", source=first.source)
    return first


def _keyed_by_path(item: Item) -> bool:
    """Whether the item has no id of its own: its key is the path it was listed with.

    Cheap rather than exact (a `Path` per entry doubled the reader's cost): the
    path ends with the key's last part. An id equal to the file's name counts
    as its path, which only matters for two such ids naming one file.
    """
    return str(item.path).endswith(os.path.basename(item.key) or "\0")
