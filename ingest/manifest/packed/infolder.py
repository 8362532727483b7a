"""Packed files met by a folder walk: each ``.tar``, ``.zip`` or ``.parquet`` a source of its images.

Owns what a folder walk (`ingest.manifest.folder`) does with a shard it finds:
its members (a tar's or zip's WebDataset samples, a Parquet file's rows)
become items in the walk's place for that file, with the same rules as that
shard given as the manifest (`samples.read_shard`, `parquet.read_parquet`:
captions from caption and json members or the caption column, bad members
each their own problem) and keys relative to the folder, as a manifest line
names a member: ``shards/000.tar#s/000123.jpg``, ``train/0.parquet#row-7``.

How it works: `read_packed` probes the file first (a compressed tar, a
damaged zip, a Parquet file without an image column, no pyarrow: one problem
naming the file, the walk goes on), then yields its members; a shard reached
a second time by another route (a symlinked directory, a hard link) is one
problem, not its members twice. A shard with no image in it is counted as a
skipped file, as a folder's other files are, and its members are not (they
are held until its first result: `WalkStats.hold`). `count_packed` counts
the same results for the walk's count ahead.

Invariants: the members' keys are the shard's path in the folder, ``#``,
the member's name (or ``row-N``), so they never collide with a loose file's
key unless a file's own name holds ``.tar#``; `WalkStats.packed` holds one
entry per shard read (its identity and its path in the folder), and none for a
shard that could not be read or held no image (a problem, a skipped file), so
`packed_counts` counts what was read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ingest.errors import ManifestError
from ingest.item import Item

if TYPE_CHECKING:
    from ingest.manifest.folder import WalkStats

PackedKind = Literal["tar", "zip", "parquet"]
PACKED_SUFFIXES: dict[str, PackedKind] = {".tar": "tar", ".zip": "zip", ".parquet": "parquet"}
_COMPRESSED_TARS = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst")


def packed_kind(name: str) -> PackedKind | None:
    """The kind of packed file `name` is by its extension (case-insensitively), or None."""
    return PACKED_SUFFIXES.get(os.path.splitext(name)[1].lower())


def compressed_tar(name: str) -> bool:
    return name.lower().endswith(_COMPRESSED_TARS)


def read_packed(
    path: Path, rel: str, source: str, stats: WalkStats
) -> Iterator[Item | ManifestError]:
    """The items of the shard at `path` (`rel` in the folder), in the shard's order."""
    kind = packed_kind(rel)
    assert kind is not None
    first = _first_route(path, rel, stats)
    if first is not None:
        stats.found += 1
        yield ManifestError(
            f"same packed file as {first!r} (a link to it, or another route to it): "
            f"its members are read once, as {first + '#…'!r}",  # quoted: one problem group
            source=source,
            line=stats.found,
            key=rel,
        )
        return
    try:
        results = _members(path, kind, rel, source, stats)
    except ManifestError as exc:
        _not_read(path, stats)
        stats.found += 1
        yield ManifestError(f"{exc.reason}: {path}", source=source, line=stats.found, key=rel)
        return
    # Its skipped members count only if it holds an image; else it is the one skipped file.
    stats.hold(lambda: _has_image(path, kind))
    held = True
    try:
        for result in results:
            if held:
                stats.release(keep=True)
                held = False
            yield result
    finally:
        if held:
            stats.release(keep=False)
    if held:
        _empty(path, rel, stats)


def count_packed(path: Path, rel: str, stats: WalkStats) -> int:
    """How many results `read_packed` yields for the shard at `path`."""
    from ingest.manifest.packed.parquet import count_parquet, probe_parquet
    from ingest.manifest.packed.samples import count_shard

    kind = packed_kind(rel)
    assert kind is not None
    if _first_route(path, rel, stats) is not None:
        return 1
    try:
        if kind == "parquet":
            probe_parquet(path, str(path))  # no image column: one problem, whatever its rows
            return count_parquet(path, at_least=0) or _empty(path, rel, stats)
        # Its skipped members count only if it holds an image (as `read_packed` counts them).
        stats.hold(lambda: _has_image(path, kind))
        found = 0
        try:
            found = count_shard(path, kind, at_least=0, stats=stats, label=rel)
        finally:
            stats.release(keep=found > 0)
        return found or _empty(path, rel, stats)
    except (ManifestError, OSError):  # the shard's one problem
        _not_read(path, stats)
        return 1


def _has_image(path: Path, kind: PackedKind) -> bool:
    """Whether the shard yields any result (a second look at its listing)."""
    from ingest.manifest.packed.parquet import count_parquet
    from ingest.manifest.packed.samples import count_shard

    if kind == "parquet":
        return count_parquet(path, at_least=0) > 0
    return count_shard(path, kind, at_least=0) > 0


def _empty(path: Path, rel: str, stats: WalkStats) -> int:
    """A shard with no image: a skipped file, not a packed file read."""
    _not_read(path, stats)
    stats.other_file(rel, "a packed file with no image in it")
    return 0


def _not_read(path: Path, stats: WalkStats) -> None:
    """Leave a shard that could not be read, or held no image, out of `packed_counts`."""
    with contextlib.suppress(OSError):
        st = os.stat(path)
        stats.packed.pop((st.st_dev, st.st_ino), None)


def _first_route(path: Path, rel: str, stats: WalkStats) -> str | None:
    """The folder path this shard was first read under, if it was; else it is noted now."""
    try:
        st = os.stat(path)
    except OSError:
        return None  # its probe says what is wrong
    ident = (st.st_dev, st.st_ino)
    first = stats.packed.get(ident)
    if first is None:
        stats.packed[ident] = rel
    return first


def _members(
    path: Path, kind: PackedKind, rel: str, source: str, stats: WalkStats
) -> Iterator[Item | ManifestError]:
    """The shard's reader, once its probe passed (`ManifestError` now if it did not)."""
    if kind == "parquet":
        from ingest.manifest.packed.parquet import probe_parquet, read_parquet

        probe_parquet(path, str(path))
        return read_parquet(path, source, rel, stats, inside=True)
    from ingest.manifest.packed.members import probe_shard
    from ingest.manifest.packed.samples import read_shard

    probe_shard(str(path), kind)
    return read_shard(path, kind, source, rel, stats, inside=True)


def packed_counts(stats: WalkStats) -> dict[str, int]:
    """The shards a walk read, by kind: {"tar": 2, "parquet": 1}."""
    counts: dict[str, int] = {}
    for rel in stats.packed.values():
        kind = packed_kind(rel) or "?"
        counts[kind] = counts.get(kind, 0) + 1
    return counts
