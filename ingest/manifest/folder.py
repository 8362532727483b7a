"""A folder as a manifest: every image file under it, found by a recursive walk.

Owns the walk: which files count (by extension, `IMAGE_EXTENSIONS`), which
are skipped (dot names, symlinked directories), the order (sorted relative
paths) and the key of each file (its path relative to the folder).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

from ingest.errors import ManifestError
from ingest.item import Item

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".gif", ".avif", ".heic", ".tif", ".tiff", ".bmp"}
)
"""File name extensions a folder walk picks up (compared case-insensitively)."""


def read_folder(root: Path, source: str) -> Generator[Item | ManifestError, None, None]:
    """Image files under `root`, depth first, in sorted order of their relative paths.

    Symlinked directories are not followed and names starting with a dot
    (``.git``, macOS ``._x.jpg`` resource forks) are skipped. Each directory is
    listed when the walk reaches it, so only the directories on the current
    path are held in memory.
    """
    position = 0
    stack: list[tuple[str, Iterator[os.DirEntry[str]]]] = [("", _listing(os.path.abspath(root)))]
    while stack:
        prefix, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        name = entry.name
        if name.startswith("."):
            continue
        rel = prefix + name
        if _is_dir(entry):
            if not _is_utf8(name):
                position += 1
                yield ManifestError(
                    f"directory name is not valid UTF-8: {_escaped(rel)}/; skipped its contents",
                    source=source,
                    line=position,
                )
                continue
            try:
                children = _listing(entry.path)
            except OSError as exc:
                position += 1
                yield ManifestError(
                    f"cannot read directory {rel}/: {exc.strerror or exc}",
                    source=source,
                    line=position,
                )
                continue
            stack.append((rel + "/", children))
        elif os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
            position += 1
            if _is_utf8(name):
                yield Item(key=rel, path=Path(entry.path), line=position)
            else:
                yield ManifestError(
                    f"file name is not valid UTF-8: {_escaped(rel)}", source=source, line=position
                )


def _listing(directory: str) -> Iterator[os.DirEntry[str]]:
    with os.scandir(directory) as it:
        entries = list(it)
    # Sorting a directory as "name/" puts the walk in sorted order of full relative paths.
    entries.sort(key=lambda e: e.name + "/" if _is_dir(e) else e.name)
    return iter(entries)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
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
