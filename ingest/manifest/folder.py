"""A folder as a manifest: every image file under it, found by a recursive walk.

Owns the walk: which files count (by extension, `IMAGE_EXTENSIONS`), which
are skipped (dot names; other files, counted), how symlinked directories are
followed (with loop protection), the order (sorted relative paths), the key
of each file (its path relative to the folder) and what a walk that found no
image at all says.

How it works: each directory is listed when the walk reaches it, so only the
listings of the directories on the current path are held. A directory, real
or symlinked, is entered unless its (st_dev, st_ino) is already on the path
from the root, or is a folder above the root: that would be a loop (a
``loop -> ..`` link, a bind mount of an ancestor), and it is counted instead. A symlinked directory reached twice
by different routes (not a loop) is walked under each name, as its files
would be listed twice in a manifest.

Invariants: `read_folder` yields at least one result: a walk that finds no
image yields one `ManifestError` ("no images found", with what it skipped);
`count_folder` counts what `read_folder` would yield, without sorting.
"""

from __future__ import annotations

import bisect
import contextlib
import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from ingest.errors import ManifestError
from ingest.item import Item

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".gif", ".avif", ".heic", ".tif", ".tiff", ".bmp"}
)
"""File name extensions a folder walk picks up (compared case-insensitively)."""

_EXAMPLES = 3  # skipped file names a note shows

Kind = Literal["hidden", "dir", "image", "other"]


@dataclass(frozen=True, slots=True)
class SkippedFiles:
    """What a folder walk passed over: files not named as images, directory loops."""

    files: int = 0
    loops: int = 0
    examples: tuple[str, ...] = ()  # the first few skipped files (sorted), relative to the folder

    def __bool__(self) -> bool:
        return bool(self.files or self.loops)

    def describe(self) -> str:
        """E.g. "3 non-image files (notes.txt, Thumbs.db, …), 1 symlinked loop"."""
        parts = []
        if self.files:
            shown = ", ".join(self.examples) + (", …" if self.files > len(self.examples) else "")
            noun = "file" if self.files == 1 else "files"
            parts.append(f"{self.files} non-image {noun} ({shown})")
        if self.loops:
            parts.append(f"{self.loops} symlinked {'loop' if self.loops == 1 else 'loops'}")
        return ", ".join(parts)


class WalkStats:
    """The running tally of one walk; `skipped` is its value so far."""

    __slots__ = ("_examples", "files", "found", "loops")

    def __init__(self) -> None:
        self.found = 0  # images, and directories that could not be walked (each a result)
        self.files = 0
        self.loops = 0
        self._examples: list[str] = []

    def other_file(self, rel: str) -> None:
        """Count a skipped file; the first few in sorted order are kept, whatever the walk's."""
        self.files += 1
        bisect.insort(self._examples, _escaped(rel))
        del self._examples[_EXAMPLES:]

    @property
    def skipped(self) -> SkippedFiles:
        return SkippedFiles(self.files, self.loops, tuple(self._examples))


def no_images(source: str, skipped: SkippedFiles) -> ManifestError:
    """The one result of a walk that found no image file."""
    why = f" (skipped {skipped.describe()})" if skipped else ""
    return ManifestError(f"no images found{why}", source=source)


def read_folder(
    root: Path, source: str, stats: WalkStats | None = None
) -> Generator[Item | ManifestError, None, None]:
    """Image files under `root`, depth first, in sorted order of their relative paths.

    Names starting with a dot (``.git``, macOS ``._x.jpg`` resource forks) are
    skipped; other files that are not images by name, and directory loops, are
    counted in `stats`.
    """
    stats = stats if stats is not None else WalkStats()
    for found, rel, detail in _walk(os.path.abspath(root), stats, _sorted_listing):
        position = stats.found
        if found == "image" and _is_utf8(rel):
            yield Item(key=rel, path=Path(detail), line=position)
            continue
        if found == "image":
            reason = f"file name is not valid UTF-8: {_escaped(rel)}"
        elif found == "bad_dir_name":
            reason = f"directory name is not valid UTF-8: {_escaped(rel)}/; skipped its contents"
        else:
            reason = f"cannot read directory {rel}/: {detail}"
        yield ManifestError(reason, source=source, line=position)
    if stats.found == 0:
        yield no_images(source, stats.skipped)


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
        for _ in _walk(os.path.abspath(root), stats, os.scandir, halt):
            pass
    except OSError:  # the folder itself: the reader says what is wrong
        return None
    return None if stopped else max(stats.found, 1)  # an empty walk: its "no images found"


Found = Literal["image", "bad_dir_name", "unreadable"]


class Entries(Protocol):
    """A directory's entries as a walk takes them: one at a time, then closed."""

    def __next__(self) -> os.DirEntry[str]: ...
    def close(self) -> None: ...


Listing = Callable[[str], Entries]  # opens a directory (an OSError now if it cannot)


def _walk(
    top: str, stats: WalkStats, listing: Listing, stop: Callable[[], bool] = lambda: False
) -> Iterator[tuple[Found, str, str]]:
    """(what, relative path, file path or reason) for each result of the walk, in its order
    (counted in `stats.found`, its skipped files and loops in `stats`).

    `listing` opens a directory (raising `OSError` then if it cannot) and lists it.
    """
    stack: list[tuple[str, Entries, tuple[int, int]]] = [("", listing(top), _identity(top))]
    # The folders above the root count as on the path: a link to one (``up -> ..``) would
    # walk the folder's parent, its siblings, and come back to the root.
    on_path = {stack[0][2], *_above(top)}
    try:
        while stack and not stop():
            prefix, entries, ident = stack[-1]
            try:
                entry = next(entries, None)
            except OSError:  # gone while being listed (a streamed listing)
                entry = None
            if entry is None:
                stack.pop()
                on_path.discard(ident)
                entries.close()
                continue
            kind = _kind(entry)
            rel = prefix + entry.name
            if kind == "image":
                stats.found += 1
                yield "image", rel, entry.path
            elif kind == "other":
                stats.other_file(rel)
            elif kind == "dir":
                if not _is_utf8(entry.name):
                    stats.found += 1
                    yield "bad_dir_name", rel, ""
                    continue
                try:
                    child = _identity(entry.path)
                    if child in on_path:
                        stats.loops += 1
                        continue
                    children = listing(entry.path)
                except OSError as exc:
                    stats.found += 1
                    yield "unreadable", rel, str(exc.strerror or exc)
                    continue
                stack.append((rel + "/", children, child))
                on_path.add(child)
    finally:
        for _, entries, _ in stack:
            entries.close()


def _kind(entry: os.DirEntry[str]) -> Kind:
    name = entry.name
    if name.startswith("."):
        return "hidden"
    if _is_dir(entry):
        return "dir"
    if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
        return "image"
    return "other"


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


def _sorted_listing(directory: str) -> Generator[os.DirEntry[str], None, None]:
    with os.scandir(directory) as it:
        entries = list(it)
    # Sorting a directory as "name/" puts the walk in sorted order of full relative paths.
    entries.sort(key=lambda e: e.name + "/" if _is_dir(e) else e.name)
    return (entry for entry in entries)


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


def _escaped(name: str) -> str:
    return os.fsencode(name).decode("utf-8", "backslashreplace")
