"""The values that flow through the engine: a manifest entry and its checked source.

Owns `Item` and `Source`, the hand-off between the input layer (manifest,
validation) and the providers. `Item` is what a manifest line says; `Source`
is an item whose file was found, measured and sniffed, ready for a provider.
Both are frozen: a stage never changes what an earlier stage saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.sniff import ImageType


@dataclass(frozen=True, slots=True)
class Item:
    """One manifest entry.

    `key` identifies the item in the journal: the manifest's `id` when given,
    else the path exactly as the manifest wrote it. `line` is the 1-based line
    number in the manifest (for a folder, the position in the walk).
    """

    key: str
    path: Path
    line: int
    name: str | None = None
    content_type: str | None = None
    caption: str | None = None
    metadata: dict[str, Any] | None = field(default=None, compare=False)
    # Where the caption came from when not the manifest line itself ("a.txt",
    # "metadata.jsonl line 3"), for `validate`.
    caption_from: str | None = field(default=None, compare=False)

    @property
    def display_name(self) -> str:
        """The file name a provider should see."""
        return self.name or self.path.name


@dataclass(frozen=True, slots=True)
class Source:
    """An item whose file exists, is readable and holds a supported image."""

    item: Item
    size: int
    mtime_ns: int
    image_type: ImageType
    # The file's bytes when read ahead at validation (small files, see `prefetch`).
    body: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def content_type(self) -> str:
        """The MIME type sniffed from the file's bytes."""
        return self.image_type.mime
