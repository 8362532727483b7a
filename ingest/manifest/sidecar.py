"""Sidecar captions in folder mode: ``img.txt`` or ``img.caption`` beside ``img.png``.

Owns which files are caption files (`is_caption_name`), how one is matched to
an image (same folder, same name without its last extension: the kohya-ss
convention), which wins when an image has both (``.txt``), how one is read
(`read_caption`: UTF-8, surrounding whitespace stripped, at most
`MAX_CAPTION_BYTES`) and which caption files matched no image (`Sidecars`).

How it works: one `Sidecars` per directory of the walk. The sorted walk knows
the directory's names when it enters it, so an image finds its caption file at
once (`for_image`); the streamed count walk does not, and only learns, by the
time the directory is closed, which caption files had no image (`unmatched`):
those are skipped files like any other, the rest are not.

Invariants: a caption file that matches an image is never counted as skipped;
a caption file that cannot be used (not UTF-8, too large, unreadable) is that
image's problem, named with the caption file's path, never a silent "no caption".
"""

from __future__ import annotations

import os

CAPTION_EXTENSIONS = (".txt", ".caption")
"""Caption file extensions, in the order one wins over the other (compared case-insensitively)."""

MAX_CAPTION_BYTES = 64 << 10
"""A larger caption file is a problem: it is not a caption (a log, a dump saved by mistake)."""


def not_utf8(data: bytes, exc: UnicodeDecodeError) -> str:
    """Why text `data` cannot be read, in the words every caption source uses (a caption file,
    a tar member, a Parquet value): "is not UTF-8 (byte 3 is 0xe9)"."""
    return f"is not UTF-8 (byte {exc.start} is 0x{data[exc.start]:02x})"


def is_caption_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in CAPTION_EXTENSIONS


def _stem(name: str) -> str:
    return os.path.splitext(name)[0]


def _rank(name: str) -> int:
    return CAPTION_EXTENSIONS.index(os.path.splitext(name)[1].lower())


class Sidecars:
    """One directory's caption files and the images they belong to."""

    __slots__ = ("_by_stem", "_images")

    def __init__(self, names: list[str] | None = None) -> None:
        self._by_stem: dict[str, list[str]] = {}  # stem -> caption file names, best first
        self._images: set[str] = set()  # stems of the images seen
        for name in names or ():
            if is_caption_name(name):
                self.caption_file(name)

    def caption_file(self, name: str) -> None:
        """Note a caption file of this directory (the streamed walk, as it meets one)."""
        found = self._by_stem.setdefault(_stem(name), [])
        if name not in found:
            found.append(name)
            found.sort(key=_rank)

    def for_image(self, name: str) -> str | None:
        """The caption file name of image `name` (known when the names were given up front)."""
        stem = _stem(name)
        self._images.add(stem)
        found = self._by_stem.get(stem)
        return found[0] if found else None

    def unmatched(self) -> list[str]:
        """The caption files of this directory that belong to no image."""
        return [
            name
            for stem, names in self._by_stem.items()
            if stem not in self._images
            for name in names
        ]


def read_caption(path: str) -> tuple[str | None, str | None]:
    """(caption, None) from the caption file at `path`, or (None, why it cannot be used).

    An empty (or whitespace-only) file is no caption: (None, None). A UTF-8
    byte order mark is dropped.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CAPTION_BYTES + 1)
    except OSError as exc:
        return None, f"cannot read caption file {path}: {exc.strerror or exc}"
    if len(data) > MAX_CAPTION_BYTES:
        return None, f"caption file over {MAX_CAPTION_BYTES >> 10} KiB (not a caption?): {path}"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, (f"caption file {not_utf8(data, exc)}; save it as UTF-8: {path}")
    text = text.strip()
    return (text or None), None
