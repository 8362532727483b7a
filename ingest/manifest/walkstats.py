"""The tally of a folder walk: what it skipped, where its captions came from, what it read.

Owns `WalkStats` (the running counts a walk and its shards update),
`SkippedFiles` and `Captions` (their values, for `validate` and a run's
note) and `no_images` (the one result of a walk that found no image, a `NoImages`).

How it works: `other_file` counts each skipped file and keeps the first few
names in sorted order, whatever the walk's order; `unused_row` does the same
for a metadata row that named no image the walk found, and `repeated_row` for
one that named an image an earlier row of its file named (kept in order of
file and line). While a shard is read
(`hold`), its skipped members are held, not counted: a shard with an image in
it (its first result, `release(keep=True)`) counts them, one without counts
itself as the one skipped file (`release(keep=False)`), never itself and its
members. At most `HOLD` of them are held: past that, `hold`'s `has_image`
decides at once (a second look at the shard's listing).

Invariants: the sorted and the streamed walk (`folder.read_folder`,
`folder.count_folder`) end with the same `skipped` for the same folder; a
skipped file or row is told to `listener` once, when it is counted.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable
from dataclasses import dataclass

from ingest.errors import ManifestError

_EXAMPLES = 3  # skipped names a note shows
HOLD = 1024
"""A shard's skipped members held before `has_image` is asked (memory stays bounded)."""


@dataclass(frozen=True, slots=True)
class SkippedFiles:
    """What a folder walk passed over: files not named as images, directory loops, and
    metadata rows naming no image it found."""

    files: int = 0
    loops: int = 0
    examples: tuple[str, ...] = ()  # the first few skipped files (sorted), relative to the folder
    rows: int = 0  # metadata rows whose file_name is no image of the walk
    row_examples: tuple[str, ...] = ()  # the first few of their names (sorted), as `examples`
    repeats: int = 0  # metadata rows naming an image an earlier row of their file named
    repeat_examples: tuple[str, ...] = ()  # the first few: "metadata.csv line 4: a.png"

    def __bool__(self) -> bool:
        return bool(self.files or self.loops or self.rows or self.repeats)

    def describe(self) -> str:
        """E.g. "3 non-image files (notes.txt, Thumbs.db, …), 1 symlinked loop"."""
        parts = []
        if self.files:
            noun = "file" if self.files == 1 else "files"
            parts.append(f"{self.files} non-image {noun} ({_shown(self.examples, self.files)})")
        if self.loops:
            parts.append(f"{self.loops} symlinked {'loop' if self.loops == 1 else 'loops'}")
        if self.rows:
            noun = "row" if self.rows == 1 else "rows"
            shown = _shown(self.row_examples, self.rows)
            parts.append(f"{self.rows} metadata {noun} naming no image found ({shown})")
        if self.repeats:
            noun = "row" if self.repeats == 1 else "rows"
            shown = _shown(self.repeat_examples, self.repeats)
            each = "the image takes" if self.repeats == 1 else "each image takes"
            parts.append(
                f"{self.repeats} metadata {noun} naming an image again ({shown}; {each} its first row)"
            )
        return ", ".join(parts)


def _shown(examples: tuple[str, ...], count: int) -> str:
    return ", ".join(examples) + (", …" if count > len(examples) else "")


@dataclass(frozen=True, slots=True)
class Captions:
    """Where the captions of a folder's images came from (the sorted walk's count)."""

    sidecar: int = 0  # images captioned by their caption file
    metadata: int = 0  # images captioned by their metadata row
    none: int = 0  # images with no caption
    both: int = 0  # images with a caption file and a captioned row (the caption file won)
    rows_unused: int = 0  # metadata rows naming no image the walk found (`SkippedFiles.rows`)
    # The metadata files used, relative to the folder (a shard's: "json members"; a
    # Parquet file's: its caption column).
    files: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.sidecar or self.metadata or self.files)

    def describe(self) -> str:
        """E.g. "captions: 40 from caption files, 10 from metadata.jsonl, 2 without a caption"."""
        *rest, last = self.files or ("metadata",)  # "from json members, column 'text'" read
        where = f"{', '.join(rest)} and {last}" if rest else last  # as one source: "and"
        parts = [f"{self.sidecar} from caption files"] if self.sidecar or not self.files else []
        parts += [f"{self.metadata} from {where}", f"{self.none} without a caption"]
        if self.both:
            parts.append(f"{self.both} with both (the caption file used)")
        return "captions: " + ", ".join(parts)


class WalkStats:
    """The running tally of one walk; `skipped` and `captions` are its values so far."""

    __slots__ = (
        *("_examples", "_held", "_repeats", "_row_examples", "caption_counts", "files"),
        *("found", "listener", "loops", "notes", "packed", "repeats", "rows", "tables"),
    )

    def __init__(self, listener: Callable[[str, str], None] | None = None) -> None:
        # Told each skipped file and why, as the walk passes it (`validate --each`).
        self.listener = listener
        self.found = 0  # images, and directories that could not be walked (each a result)
        self.files = 0
        self.loops = 0
        self.rows = 0
        self.repeats = 0
        self._examples: list[str] = []
        self._row_examples: list[str] = []
        self._repeats: list[tuple[str, int, str]] = []  # (metadata file, line, image), sorted
        self.caption_counts = [0, 0, 0, 0, 0]  # as the fields of `Captions`, in order
        self.tables: list[str] = []
        self.packed: dict[tuple[int, int], str] = {}  # shards read: (st_dev, st_ino) -> path
        self._held: _Held | None = None
        self.notes: list[str] = []  # what a reader saw worth telling (a Parquet file's large pages)

    def other_file(self, rel: str, why: str = "not an image by its name") -> None:
        """Count a skipped file; the first few in sorted order are kept, whatever the walk's."""
        held = self._held
        if held is not None:
            if held.dropping:
                return
            held.files.append((rel, why))
            if len(held.files) <= HOLD:
                return
            self._held = None
            if not held.has_image():  # the shard is the one skipped file, not its members
                held.files.clear()
                held.dropping = True
                self._held = held
                return
            for name, reason in held.files:
                self.other_file(name, reason)
            return
        if self.listener is not None:
            self.listener(escaped(rel), why)
        self.files += 1
        _keep_first(self._examples, escaped(rel))

    def unused_row(self, rel: str, where: str) -> None:
        """Count a metadata row (at `where`) whose file_name `rel` is no image of the walk."""
        if self.listener is not None:
            self.listener(escaped(rel), f"named by {where}, but no image of that name is there")
        self.rows += 1
        self.caption_counts[4] += 1
        _keep_first(self._row_examples, escaped(rel))

    def repeated_row(self, table: str, line: int, rel: str, first: str) -> None:
        """Count row `line` of metadata file `table`, naming image `rel` again (its row: `first`)."""
        if self.listener is not None:
            self.listener(
                f"{table} line {line}", f"names {escaped(rel)} again (its row is {first})"
            )
        self.repeats += 1
        bisect.insort(self._repeats, (table, line, escaped(rel)))
        del self._repeats[_EXAMPLES:]

    def hold(self, has_image: Callable[[], bool]) -> None:
        """Hold the skipped files counted from now (a shard's members) until `release`."""
        self._held = _Held(has_image)

    def release(self, *, keep: bool) -> None:
        """Count the held files (`keep`: the shard had an image), or drop them; holding ends."""
        held, self._held = self._held, None
        for rel, why in held.files if held is not None and keep else ():
            self.other_file(rel, why)

    @property
    def skipped(self) -> SkippedFiles:
        repeats = tuple(f"{table} line {line}: {rel}" for table, line, rel in self._repeats)
        return SkippedFiles(
            *(self.files, self.loops, tuple(self._examples), self.rows, tuple(self._row_examples)),
            *(self.repeats, repeats),
        )

    @property
    def captions(self) -> Captions:
        sidecar, metadata, none, both, unused = self.caption_counts
        return Captions(sidecar, metadata, none, both, unused, tuple(self.tables))


class _Held:
    """A shard's skipped members while it is not known whether it holds an image."""

    __slots__ = ("dropping", "files", "has_image")

    def __init__(self, has_image: Callable[[], bool]) -> None:
        self.has_image = has_image
        self.files: list[tuple[str, str]] = []
        self.dropping = False  # it holds none: its members are not counted


def _keep_first(examples: list[str], name: str) -> None:
    bisect.insort(examples, name)
    del examples[_EXAMPLES:]


class NoImages(ManifestError):
    """The one result of a walk (a folder, a shard, a Parquet file) that found no image:
    the manifest holds nothing to upload (`reader.refuse_empty` refuses it as a whole)."""


def no_images(source: str, skipped: SkippedFiles) -> NoImages:
    """The one result of a walk that found no image file."""
    why = f" (skipped {skipped.describe()})" if skipped else ""
    return NoImages(f"no images found{why}", source=source)


def escaped(name: str) -> str:
    """`name` printable: bytes that are not UTF-8 (a surrogate escape) shown as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")
