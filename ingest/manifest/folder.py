"""A folder as a manifest: every image file under it, found by a recursive walk.

Owns the walk: which files count (by extension, `IMAGE_EXTENSIONS`; a
``.tar``, ``.zip`` or ``.parquet`` shard is read in its place, its members
keyed ``shard path#member``: `packed.infolder`), which are skipped (dot
names; other files, counted), which are the images' captions and metadata
rather than skipped files (`sidecar`, `metadata`: a caption file beside an
image, a ``metadata.jsonl`` / ``metadata.csv``), how symlinked directories
are followed (with loop protection), the order (sorted relative paths), the
key of each file (its path relative to the folder) and what a walk that
found no image at all says.

How it works: each directory is listed when the walk reaches it, so only the
listings of the directories on the current path are held. A directory, real
or symlinked, is entered unless its (st_dev, st_ino) is already on the path
from the root, or is a folder above the root: that would be a loop (a
``loop -> ..`` link, a bind mount of an ancestor), and it is counted instead. A symlinked directory reached twice
by different routes (not a loop) is walked under each name; `read_manifest`
then keeps each file once (`dedupe.one_per_file`: the later name is reported
as the same file).

Captions: an image's sidecar caption file (``img.txt``, else ``img.caption``)
wins over the caption of its metadata row, because it is the one beside the
image (the file a captioning tool or a person edited last, as kohya-ss reads
it); the row's other columns are still the image's metadata. Each image with
both counts in `Captions.both`, so `validate` can say how often that happened.
What the walk skipped and counted is tallied in `walkstats` (re-exported here).

Invariants: `read_folder` yields at least one result: a walk that finds no
image yields one `ManifestError` ("no images found", with what it skipped);
`count_folder` counts what `read_folder` would yield, without sorting (a
metadata file's bad rows are results too, so both walks read it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Literal, Protocol

from ingest.errors import ManifestError
from ingest.item import Item
from ingest.manifest.metadata import METADATA_NAMES, Row, Table, load_table, metadata_file
from ingest.manifest.sidecar import Sidecars, is_caption_name, read_caption
from ingest.manifest.walkstats import Captions, SkippedFiles, WalkStats, escaped, no_images

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".gif", ".avif", ".heic", ".tif", ".tiff", ".bmp"}
)
"""File name extensions a folder walk picks up (compared case-insensitively)."""

__all__ = [
    "IMAGE_EXTENSIONS",
    "Captions",
    "SkippedFiles",
    "WalkStats",
    "count_folder",
    "no_images",
    "read_folder",
]

Kind = Literal["hidden", "dir", "image", "caption", "metadata", "packed", "other"]


def read_folder(
    root: Path, source: str, stats: WalkStats | None = None
) -> Generator[Item | ManifestError, None, None]:
    """Image files under `root`, depth first, in sorted order of their relative paths.

    Names starting with a dot (``.git``, macOS ``._x.jpg`` resource forks) are
    skipped; other files that are not images by name, and directory loops, are
    counted in `stats`.
    """
    stats = stats if stats is not None else WalkStats()
    for found, rel, detail, attached in _walk(os.path.abspath(root), stats, _sorted_listing):
        position = stats.found
        if found == "image" and _is_utf8(rel):
            yield _item(rel, detail, attached, stats, source, position)
            continue
        if found == "packed":  # a shard: its members, keyed rel#member (`packed.infolder`)
            from ingest.manifest.packed.infolder import read_packed

            yield from read_packed(Path(detail), rel, source, stats)
            continue
        if found == "image":
            reason = f"file name is not valid UTF-8: {escaped(rel)}"
        elif found == "metadata":
            reason = detail
        elif found == "bad_dir_name":
            reason = f"directory name is not valid UTF-8: {escaped(rel)}/; skipped its contents"
        else:
            reason = f"cannot read directory {rel}/: {detail}"
        yield ManifestError(reason, source=source, line=position)
    if stats.found == 0:
        yield no_images(source, stats.skipped)


def _item(
    rel: str, path: str, attached: Attached, stats: WalkStats, source: str, position: int
) -> Item | ManifestError:
    """The image at `rel` with its caption and metadata, or why its caption file cannot be used."""
    caption_file, row = attached
    caption, problem = read_caption(caption_file) if caption_file else (None, None)
    if problem is not None:
        return ManifestError(problem, source=source, line=position, key=rel)
    counts = stats.caption_counts
    origin = None
    if caption is not None:
        counts[0] += 1
        counts[3] += row is not None and row.caption is not None
        origin = os.path.join(os.path.dirname(rel), os.path.basename(caption_file or ""))
    elif row is not None and row.caption is not None:
        caption, origin = row.caption, row.where
        counts[1] += 1
    else:
        counts[2] += 1
    metadata = row.metadata if row is not None else None
    return Item(
        key=rel,
        path=Path(path),
        line=position,
        caption=caption,
        metadata=metadata,
        caption_from=origin,
    )


def count_folder(root: Path, stats: WalkStats, stop: Callable[[], bool]) -> int | None:
    """How many results `read_folder(root)` yields, or None if `stop()` said so first.

    The same walk unsorted: each directory is streamed (`os.scandir`), never
    listed whole, so memory holds only the directories on the current path.
    """
    stopped = False

    def halt() -> bool:
        nonlocal stopped
        stopped = stop()
        return stopped

    try:
        for found, rel, detail, _ in _walk(os.path.abspath(root), stats, os.scandir, halt):
            if found == "packed":
                from ingest.manifest.packed.infolder import count_packed

                stats.found += count_packed(Path(detail), rel, stats)
    except OSError:  # the folder itself: the reader says what is wrong
        return None
    return None if stopped else max(stats.found, 1)  # an empty walk: its "no images found"


Found = Literal["image", "packed", "metadata", "bad_dir_name", "unreadable"]
Attached = tuple[str | None, Row | None]  # an image's caption file path, its metadata row
_NOTHING: Attached = (None, None)


class Entries(Protocol):
    """A directory's entries as a walk takes them: one at a time, then closed."""

    def __next__(self) -> os.DirEntry[str]: ...
    def close(self) -> None: ...


Listing = Callable[[str], Entries]  # opens a directory (an OSError now if it cannot)


class _Level:
    """One directory on the walk's path: its listing, its caption files, its metadata file."""

    __slots__ = ("entries", "ident", "prefix", "sidecars", "table")

    def __init__(self, path: str, prefix: str, entries: Entries, ident: tuple[int, int]) -> None:
        self.prefix = prefix
        self.entries = entries
        self.ident = ident
        names = getattr(entries, "names", None)  # known up front by the sorted listing
        self.sidecars = Sidecars(names)
        found = metadata_file(set(names) if names is not None else None, path)
        self.table: Table | None = None
        if found is not None:
            self.table = load_table(path, prefix, found[0])
            self.table.skipped = found[1]

    def close(self, stats: WalkStats) -> None:
        self.entries.close()
        for name in self.sidecars.unmatched():
            stats.other_file(self.prefix + name, "a caption file with no image of its name")
        if self.table is not None:
            for rel, row in sorted(self.table.rows.items()):  # named no image the walk found
                stats.unused_row(rel, row.where)
            if self.table.skipped:
                why = f"a second metadata file ({self.table.name} is used)"
                stats.other_file(self.prefix + self.table.skipped, why)


def _walk(
    top: str, stats: WalkStats, listing: Listing, stop: Callable[[], bool] = lambda: False
) -> Iterator[tuple[Found, str, str, Attached]]:
    """(what, relative path, file path or reason, caption file and metadata row) for each
    result of the walk, in its order (counted in `stats.found`, its skipped files and loops
    in `stats`).

    `listing` opens a directory (raising `OSError` then if it cannot) and lists it.
    """
    stack: list[_Level] = []
    # The folders above the root count as on the path: a link to one (``up -> ..``) would
    # walk the folder's parent, its siblings, and come back to the root.
    on_path = set(_above(top))
    level: _Level | None = _Level(top, "", listing(top), _identity(top))
    try:
        while not stop():
            if level is not None:  # entered: its metadata file's problems come first
                stack.append(level)
                on_path.add(level.ident)
                table, level = level.table, None
                name = table.name if table is not None else ""
                if table is not None:
                    stats.tables.append(name)
                for line, reason in table.problems if table is not None else ():
                    stats.found += 1
                    yield "metadata", name, _at(name, line, reason), _NOTHING
                for line, rel, first in table.repeats if table is not None else ():
                    stats.repeated_row(name, line, rel, first)  # not an entry: its image has one
            if not stack:
                break
            current = stack[-1]
            try:
                entry = next(current.entries, None)
            except OSError:  # gone while being listed (a streamed listing)
                entry = None
            if entry is None:
                stack.pop()
                on_path.discard(current.ident)
                current.close(stats)
                continue
            kind = _kind(entry)
            rel = current.prefix + entry.name
            if kind == "image":
                stats.found += 1
                caption = current.sidecars.for_image(entry.name)
                row = None
                for above in reversed(stack):  # the nearest metadata file's row wins
                    taken = above.table.take(rel) if above.table is not None else None
                    row = row or taken
                where = os.path.join(os.path.dirname(entry.path), caption) if caption else None
                yield "image", rel, entry.path, (where, row)
            elif kind == "packed" and _is_utf8(rel):  # its members: counted as they are read
                yield "packed", rel, entry.path, _NOTHING
            elif kind == "caption":
                current.sidecars.caption_file(entry.name)
            elif kind in ("other", "packed"):
                stats.other_file(rel, _why_skipped(entry.name))
            elif kind == "dir":
                if not _is_utf8(entry.name):
                    stats.found += 1
                    yield "bad_dir_name", rel, "", _NOTHING
                    continue
                try:
                    child = _identity(entry.path)
                    if child in on_path:
                        stats.loops += 1
                        if stats.listener is not None:
                            stats.listener(escaped(rel) + "/", "a symlinked loop")
                        continue
                    level = _Level(entry.path, rel + "/", listing(entry.path), child)
                except OSError as exc:
                    stats.found += 1
                    yield "unreadable", rel, str(exc.strerror or exc), _NOTHING
                    continue
    finally:
        for left in [*stack, level] if level is not None else stack:
            left.entries.close()


def _why_skipped(name: str) -> str:
    from ingest.manifest.packed.infolder import compressed_tar, packed_kind

    if packed_kind(name) is not None:
        return "a packed file whose name is not valid UTF-8"
    if compressed_tar(name):
        return "a compressed tar: ingest reads an uncompressed .tar in place (decompress it)"
    return "not an image by its name"


def _at(name: str, line: int, reason: str) -> str:
    return f"{name} line {line}: {reason}" if line else reason


def _kind(entry: os.DirEntry[str]) -> Kind:
    name = entry.name
    if name.startswith("."):
        return "hidden"
    if _is_dir(entry):
        return "dir"
    ext = os.path.splitext(name)[1].lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if name in METADATA_NAMES:
        return "metadata"  # read when its directory was entered
    if is_caption_name(name):
        return "caption"
    return "packed" if ext in (".tar", ".zip", ".parquet") else "other"


def _identity(directory: str) -> tuple[int, int]:
    st = os.stat(directory)  # follows a symlink: the directory it names
    return st.st_dev, st.st_ino


def _above(top: str) -> set[tuple[int, int]]:
    """The identities of the folders above `top`, as written and with links resolved."""
    found = set()
    for path in {top, os.path.realpath(top)}:
        while (parent := os.path.dirname(path)) != path:
            with contextlib.suppress(OSError):
                found.add(_identity(parent))
            path = parent
    return found


class _Sorted:
    """A directory listed whole and sorted; its `names` are known before the first entry."""

    __slots__ = ("_it", "names")

    def __init__(self, entries: list[os.DirEntry[str]]) -> None:
        self.names = [entry.name for entry in entries if not _is_dir(entry)]  # files only
        self._it = iter(entries)

    def __next__(self) -> os.DirEntry[str]:
        return next(self._it)

    def close(self) -> None:
        pass


def _sorted_listing(directory: str) -> _Sorted:
    with os.scandir(directory) as it:
        entries = list(it)
    # Sorting a directory as "name/" puts the walk in sorted order of full relative paths.
    entries.sort(key=lambda e: e.name + "/" if _is_dir(e) else e.name)
    return _Sorted(entries)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """A directory, or a symlink to one (a dangling or looping link is not)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
