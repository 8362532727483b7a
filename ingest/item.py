"""The values that flow through the engine: a manifest entry and its checked source.

Owns `Item` and `Source`, the hand-off between the input layer (manifest,
validation) and the providers. `Item` is what a manifest line says; `Source`
is an item whose file was found, measured and sniffed, ready for a provider.
Both are frozen: a stage never changes what an earlier stage saw.

An item may be one member of a packed shard (a tar or zip member, `Member`):
its `path` is then the shard, and its bytes are the member's `length` bytes
at `offset` in it (a stored member is a contiguous range of the shard file,
read with ``pread`` like any file) or, for a compressed zip member, what
decompressing its `compressed` bytes at `offset` gives, or for a Parquet row
the bytes its image column holds there.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import urlsplit

from ingest.redact import shown_url
from ingest.sniff import ImageType


@dataclass(frozen=True, slots=True)
class Member:
    """Where an item's bytes are inside a packed shard."""

    name: str  # the member's name in the shard
    offset: int  # of its (stored or compressed) bytes in the shard file
    length: int  # of its bytes as uploaded
    compressed: int | None = None  # a deflated zip member: its compressed size
    row: tuple[int, int] | None = None  # a Parquet row: (row group, row in it); offset unused
    codec: tuple[int, int] | None = None  # a compressed zip member: (method, CRC-32)

    @property
    def stored(self) -> bool:
        """The bytes are a plain range of the shard (tar members, stored zip members)."""
        return self.compressed is None and self.row is None


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
    member: Member | None = None  # a member of the packed shard at `path`
    # A remote source (``https://…``, `ingest.remote`): fetched before its upload; `path`
    # is then only its shown form until the fetched file replaces it.
    url: str | None = field(default=None, repr=False)
    # The file's `os.stat` as the reader's same-file check took it (`dedupe.one_per_file`,
    # which sets it once, before the item leaves the reader): `validate` checks that
    # result instead of taking a second one. None where no check took it.
    stat: os.stat_result | None = field(default=None, compare=False, repr=False)
    # A remote item's `Source` before its fetch has size 0 and a placeholder type (JPEG);
    # `ingest.remote` replaces it with the fetched file's.

    @property
    def display_name(self) -> str:
        """The file name a provider should see."""
        if self.name:
            return self.name
        if self.url is not None:
            return PurePosixPath(urlsplit(self.url).path).name or "image"
        return self.member.name.rsplit("/", 1)[-1] if self.member else self.path.name

    @property
    def where(self) -> str:
        """The item's bytes as a user names them: the path, or ``shard.tar#member``."""
        if self.url is not None:
            return shown_url(self.url)
        return f"{self.path}#{self.member.name}" if self.member else str(self.path)


@dataclass(frozen=True, slots=True)
class Converted:
    """What a source converted by `--convert` was made from (see `ingest.convert`)."""

    original: ImageType
    size: int  # the original's bytes: with `Source.mtime_ns`, the journal's fingerprint
    digest: str  # sha256 of the converted bytes (journaled)


class Streamed(Protocol):
    """A source's bytes read as they are sent, not from `item.path` (a remote source whose
    length is known: `ingest.remote`). Each call of `chunks` is one pass: the first sends what
    the fetch opened, a later one (a retry, a re-sign) fetches again. A problem it meets is
    appended to `problems` and raised: it ends the body early, so storage keeps nothing."""

    def chunks(self, problems: list[BaseException]) -> AsyncGenerator[bytes, None]: ...


@dataclass(frozen=True, slots=True)
class Source:
    """An item whose file exists, is readable and holds a supported image."""

    item: Item
    size: int
    mtime_ns: int
    image_type: ImageType
    # The file's bytes when read ahead at validation (small files, see `prefetch`).
    body: bytes | None = field(default=None, compare=False, repr=False)
    # Made by `--convert`: `item.path` is then the spooled converted file.
    converted: Converted | None = field(default=None, compare=False)
    # A remote source streamed into its PUT (`ingest.remote`): `item.path` is then no file.
    stream: Streamed | None = field(default=None, compare=False, repr=False)

    @property
    def file_size(self) -> int:
        """The size the journal fingerprints: the original's when converted."""
        return self.converted.size if self.converted is not None else self.size

    @property
    def content_type(self) -> str:
        """The MIME type sniffed from the file's bytes."""
        return self.image_type.mime
