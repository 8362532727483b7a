"""The tally of a folder walk: what it skipped, where its captions came from, what it read.

Owns `WalkStats` (the running counts a walk and its shards update),
`SkippedFiles` and `Captions` (their values, for `validate` and a run's
note) and `no_images` (the one result of a walk that found no image).

How it works: `other_file` counts each skipped file and keeps the first few
names in sorted order, whatever the walk's order; `unused_row` does the same
for a metadata row that named no image the walk found.

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


@dataclass(frozen=True, slots=True)
class SkippedFiles:
    """What a folder walk passed over: files not named as images, directory loops, and
    metadata rows naming no image it found."""

    files: int = 0
    loops: int = 0
    examples: tuple[str, ...] = ()  # the first few skipped files (sorted), relative to the folder
    rows: int = 0  # metadata rows whose file_name is no image of the walk
    row_examples: tuple[str, ...] = ()  # the first few of their names (sorted), as `examples`

    def __bool__(self) -> bool:
        return bool(self.files or self.loops or self.rows)

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
        where = ", ".join(self.files) if self.files else "metadata"
        parts = [f"{self.sidecar} from caption files"] if self.sidecar or not self.files else []
        parts += [f"{self.metadata} from {where}", f"{self.none} without a caption"]
        if self.both:
            parts.append(f"{self.both} with both (the caption file used)")
        return "captions: " + ", ".join(parts)


class WalkStats:
    """The running tally of one walk; `skipped` and `captions` are its values so far."""

    __slots__ = (
        *("_examples", "_row_examples", "caption_counts", "files", "found"),
        *("listener", "loops", "packed", "rows", "tables"),
    )

    def __init__(self, listener: Callable[[str, str], None] | None = None) -> None:
        # Told each skipped file and why, as the walk passes it (`validate --each`).
        self.listener = listener
        self.found = 0  # images, and directories that could not be walked (each a result)
        self.files = 0
        self.loops = 0
        self.rows = 0
        self._examples: list[str] = []
        self._row_examples: list[str] = []
        self.caption_counts = [0, 0, 0, 0, 0]  # as the fields of `Captions`, in order
        self.tables: list[str] = []
        self.packed: dict[tuple[int, int], str] = {}  # shards read: (st_dev, st_ino) -> path

    def other_file(self, rel: str, why: str = "not an image by its name") -> None:
        """Count a skipped file; the first few in sorted order are kept, whatever the walk's."""
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

    @property
    def skipped(self) -> SkippedFiles:
        return SkippedFiles(
            self.files, self.loops, tuple(self._examples), self.rows, tuple(self._row_examples)
        )

    @property
    def captions(self) -> Captions:
        sidecar, metadata, none, both, unused = self.caption_counts
        return Captions(sidecar, metadata, none, both, unused, tuple(self.tables))


def _keep_first(examples: list[str], name: str) -> None:
    bisect.insort(examples, name)
    del examples[_EXAMPLES:]


def no_images(source: str, skipped: SkippedFiles) -> ManifestError:
    """The one result of a walk that found no image file."""
    why = f" (skipped {skipped.describe()})" if skipped else ""
    return ManifestError(f"no images found{why}", source=source)


def escaped(name: str) -> str:
    """`name` printable: bytes that are not UTF-8 (a surrogate escape) shown as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")
