"""Local checks of one manifest item, before any network: `Item` in, `Source` out.

Owns what makes a file uploadable as far as this machine can tell: it exists,
is a regular, non-empty, readable file within the provider's size limit, its
bytes (never its name) are an image type the provider accepts, not cut short
(PNG, JPEG), and they agree with any content type the manifest declared.

Every check is blocking I/O by design (one open, one fstat, one short read per
item, in that order, so a FIFO never blocks; with a `Prefetch` budget, a small
file is read whole instead; a PNG or JPEG also gets one read of its last 4 KiB,
for `truncation`); the engine calls the `Checker` from a worker thread in
batches. Where the reader's same-file check took a stat (`Item.stat`), that is
the stat: no fstat. A size that moved since is told by the whole read (no
body kept) or, for a file read in parts, by the upload's own size check. A
failed check is returned, not raised, as a `ManifestError` whose reason
stands on its own ("file not found: /data/a.png").
"""

from __future__ import annotations

import codecs
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.capabilities import Capabilities
from ingest.errors import ManifestError
from ingest.item import Item, Source
from ingest.namelimit import EarlierUses, NameLimit
from ingest.prefetch import Prefetch, release
from ingest.readahead import ReadAhead
from ingest.sniff import SNIFF_BYTES, TAIL_BYTES, ImageType, generic_heif, sniff, truncation

OPEN_FLAGS = (  # how a check opens an item's file
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not wait for a writer
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)

_MIME_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/tif": "image/tiff",
    "image/x-tiff": "image/tiff",
    "image/x-bmp": "image/bmp",
    "image/x-ms-bmp": "image/bmp",
    "image/heif": "image/heic",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """What a provider accepts, as far as it can be checked locally.

    `provider` only names the provider in messages ("novita accepts png, jpeg").
    """

    formats: frozenset[ImageType]
    max_size: int | None  # bytes
    provider: str | None = None
    # With --convert: types converted before upload, whose size is checked once converted.
    converts: frozenset[ImageType] = frozenset()


def check(
    item: Item,
    limits: Limits,
    *,
    source: str | None = None,
    prefetch: Prefetch | None = None,
    fd: int | None = None,
) -> Source | ManifestError:
    """`item` as a `Source` if its file can be uploaded under `limits`, else why not.

    The error's `source` is `source` when given (the manifest, say), else the
    item's path; its `line` is the item's manifest line. With `prefetch`, a
    small file's bytes come along in `Source.body` while the budget allows.
    `fd`: the item's file, already opened with `OPEN_FLAGS` (`ingest.readahead`);
    closed here, as the file this opens itself is.
    """
    if item.url is not None:  # a remote source: checked as it is fetched (`ingest.remote`)
        return Source(item=item, size=0, mtime_ns=0, image_type=ImageType.JPEG)
    if prefetch is None:
        return _check(item, limits, source, _no_read_ahead, fd)
    taken = 0

    def reserve(size: int) -> bool:
        nonlocal taken
        if prefetch.take(size):
            taken = size
        return taken > 0

    result = _check(item, limits, source, reserve, fd)
    if taken and not (isinstance(result, Source) and result.body is not None):
        prefetch.give_back(taken)
    return result


def _no_read_ahead(size: int) -> bool:
    return False


def _check(
    item: Item,
    limits: Limits,
    source: str | None,
    reserve: Callable[[int], bool],
    fd: int | None = None,
) -> Source | ManifestError:

    def fail(reason: str) -> ManifestError:
        where = str(item.path) if source is None else source  # only on failure: ~1 µs an item
        return ManifestError(reason, source=where, line=item.line)

    path: Path | str = item.path
    try:
        if fd is None:
            fd = os.open(path, OPEN_FLAGS)
    except FileNotFoundError:
        return fail(f"file not found: {path}")
    except NotADirectoryError:
        return fail(f"file not found: {path} (a parent of it is not a directory)")
    except IsADirectoryError:
        return fail(f"is a directory: {path}")
    except PermissionError:
        return fail(f"permission denied: {path}")
    except OSError as exc:
        return fail(f"cannot open {path}: {exc.strerror or exc}")
    except ValueError:
        return fail(f"invalid path (it contains a NUL character): {path!r}")
    try:
        st = item.stat or os.fstat(fd)  # the reader's stat, when it took one
        if stat.S_ISDIR(st.st_mode):
            return fail(f"is a directory: {path}")
        if not stat.S_ISREG(st.st_mode):
            return fail(f"not a regular file ({_file_kind(st.st_mode)}): {path}")
        size, member = st.st_size, item.member
        if member is not None:  # a shard's member: its bytes, named shard#member from here on
            size, path = member.length, item.where  # a str: only messages show it
        if size == 0:
            return fail(f"{EMPTY}: {path}")
        over = limits.max_size is not None and size > limits.max_size
        if over and not limits.converts:  # with converted types: known once sniffed, below
            return fail(f"{too_large(size, limits.max_size or 0, limits.provider)}: {path}")
        whole = reserve(size)
        try:
            if member is not None:
                head = _read_member(fd, st.st_size, item, size if whole else SNIFF_BYTES)
            else:
                head = _read_all(fd, size) if whole else os.read(fd, SNIFF_BYTES)
            image_type = sniff(head)  # once: the tail is read only for the types it checks
            tail = _tail(fd, item, head, size, image_type, whole=whole)
        except PermissionError:
            return fail(f"permission denied: {path}")
        except OSError as exc:
            return fail(f"cannot read {path}: {exc.strerror or exc}")
    finally:
        os.close(fd)

    if image_type is None:
        return fail(f"{not_an_image(head)}: {path}")
    if over and image_type not in limits.converts:  # a converted one: its converted bytes
        return fail(f"{too_large(size, limits.max_size or 0, limits.provider)}: {path}")
    if image_type not in limits.formats:
        return fail(f"{unsupported_type(image_type, limits.formats, limits.provider)}: {path}")
    if item.content_type is not None and _normal_mime(item.content_type) != image_type.mime:
        declared = item.content_type.strip()
        if "/" not in declared:  # "jpeg", "png": a type name where a MIME type belongs
            return fail(
                f"declared content_type {declared!r} is not a MIME type; expected one such as "
                f"{image_type.mime} (the type of this file): {path}"
            )
        return fail(f"declared {declared} but the file is {image_type.mime}: {path}")
    cut = truncation(image_type, tail, whole=size <= TAIL_BYTES) if tail else None
    if cut is not None:
        return fail(f"{cut}: {path}")
    # A file whose size moved between the stat and the read keeps no body:
    # the upload reads it again, and tells it changed.
    body = head if whole and len(head) == size else None
    return Source(item=item, size=size, mtime_ns=st.st_mtime_ns, image_type=image_type, body=body)


def _read_member(fd: int, shard_size: int, item: Item, n: int) -> bytes:
    """Up to `n` bytes of the item's shard member (a range of `fd`, or decompressed)."""
    member = item.member
    assert member is not None
    if member.stored:
        if member.offset + member.length > shard_size:
            raise OSError(f"truncated member (the shard ends before its {member.length} bytes)")
        return os.pread(fd, min(n, member.length), member.offset)
    from ingest.manifest.packed.access import read_member  # not at import: a cycle

    return read_member(item.path, member, n)


_TAIL_CHECKED = (ImageType.PNG, ImageType.JPEG)


def _tail(
    fd: int, item: Item, head: bytes, size: int, image_type: ImageType | None, *, whole: bool
) -> bytes:
    """The file's last bytes for `truncation` (one pread, only for the types it checks).

    A shard member stored as is is read in place, a Parquet row from the
    reader's cache; a compressed zip member is not checked (its end costs a
    decompression of all of it). Nor is a file whose
    size moved since its stat (a read longer or shorter than it said): its
    end is not where the stat put it, and its upload tells it changed.
    """
    if whole or size <= len(head):
        return head[-TAIL_BYTES:] if len(head) == size else b""
    if image_type not in _TAIL_CHECKED:
        return b""
    n = min(TAIL_BYTES, size)
    member = item.member
    if member is None:
        end = os.pread(fd, n + 1, size - n)  # one byte more tells a file that grew
        return end if len(end) == n else b""
    if member.row is not None:  # a Parquet row: its bytes are the reader's cached ones
        from ingest.manifest.packed.access import read_member  # not at import: a cycle

        return read_member(item.path, member, n, size - n)
    return os.pread(fd, n, member.offset + size - n) if member.stored else b""


def _read_all(fd: int, size: int) -> bytes:
    """Up to `size + 1` bytes: one more than the stat said tells a file that grew.

    A regular file reads short only at its end, so a first read of at least
    `size` bytes is all there is (one read a file, not two).
    """
    first = os.read(fd, size + 1)
    if len(first) >= size or not first:
        return first
    chunks, want = [first], size + 1 - len(first)
    while want > 0 and (chunk := os.read(fd, want)):
        chunks.append(chunk)
        want -= len(chunk)
    return b"".join(chunks)


class Checker:
    """Every local check a provider's items get, the same in `run`, `validate` and `--dry-run`."""

    def __init__(
        self,
        caps: Capabilities,
        provider: str,
        *,
        prefetch: Prefetch | None = None,
        earlier: EarlierUses | None = None,
        now: Callable[[], float] | None = None,
        read_ahead: bool = False,
    ) -> None:
        self.limits = Limits(caps.formats, caps.max_size, provider, caps.converts)
        self.names = (
            NameLimit(
                caps.same_name_limit,
                provider,
                window_s=caps.same_name_window_s,
                earlier=earlier,
                now=now,
            )
            if caps.same_name_limit
            else None
        )
        self.prefetch = prefetch
        self.ahead = ReadAhead(OPEN_FLAGS) if read_ahead else None

    def __call__(self, item: Item) -> Source | ManifestError:
        ahead = self.ahead
        fd = ahead.take(item) if ahead is not None else None
        result = check(item, self.limits, prefetch=self.prefetch, fd=fd)
        if isinstance(result, Source) and self.names is not None:
            refused = self.names.check(item)
            if refused is not None:
                release(result, self.prefetch)
                return refused
        return result


def check_many(
    items: Iterable[Item], limits: Limits, *, source: str | None = None
) -> Iterator[Source | ManifestError]:
    """`check` each item in turn, lazily."""
    for item in items:
        yield check(item, limits, source=source)


EMPTY = "empty file (0 bytes)"  # a file's or a fetched body's refusal (`ingest.remote_body`)


def unsupported_type(kind: ImageType, formats: Iterable[ImageType], provider: str | None) -> str:
    """Why a file or fetched body of type `kind` is refused: the provider takes only `formats`."""
    accepted = ", ".join(sorted(t.ext for t in formats)) or "nothing"
    who = f"{provider} accepts" if provider else "accepted:"
    hint = "; --convert converts it"  # every type `sniff` knows, `ingest.convert` decodes
    return f"unsupported image type {kind.ext} ({who} {accepted}{hint})"


def not_an_image(head: bytes) -> str:
    """Why a file or fetched body starting `head` is refused: it is no image type we know."""
    return f"not an image (content looks like {describe_content(head)})"


def describe_content(head: bytes) -> str:
    """A short guess at what a non-image file is, from its first bytes, for messages."""
    if not head:
        return "nothing (the file is empty)"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", "replace").strip()
        heif = generic_heif(head)
        if heif is not None:  # a JPEG, uncompressed... HEIF: neither sent nor --convert decodes it
            return (
                f"an HEIF {heif} of brand {brand!r} with no HEIC or AVIF brand"
                " (a kind neither the provider nor --convert takes)"
            )
        return f"an ISO media file of brand {brand!r} (a video?), not AVIF or HEIC"
    if head[:4] == b"RIFF":
        return f"a RIFF {head[8:12].decode('ascii', 'replace').strip()} file, not WebP"
    text = _as_text(head)
    if text is None:
        return f"binary data starting {head[:8].hex(' ')}"
    lowered = text.lstrip().lower()
    if lowered.startswith(("<!doctype html", "<html", "<head", "<body")):
        return "an HTML page (an error or login page saved by mistake?)"
    if lowered.startswith(("<svg", "<?xml")):
        return "SVG or XML (vector images are not supported; convert to PNG)"
    if lowered.startswith("version https://git-lfs"):
        return "a Git LFS pointer (run `git lfs pull` to fetch the real file)"
    if lowered.startswith(("{", "[")):
        return "JSON text"
    return f"text ({_snippet(text)!r})"


_MAGIC = (
    (b"%PDF", "a PDF document (%PDF)"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"8BPS", "a Photoshop document (PSD)"),
    (b"\xff\x0a", "JPEG XL (not supported)"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL (not supported)"),
    (b"\x00\x00\x01\x00", "an icon (ICO)"),
    (b"SQLite format 3\x00", "a SQLite database"),
    (b"PAR1", "a Parquet file"),
    (b"\x7fELF", "an executable (ELF)"),
)


def _as_text(head: bytes) -> str | None:
    """`head` as text if it reads as printable UTF-8 (a cut-off last character allowed)."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return None
    if all(ch.isprintable() or ch in "\t\n\r\f\v" for ch in text):
        return text
    return None


def _snippet(text: str, limit: int = 24) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _normal_mime(declared: str) -> str:
    mime = declared.split(";", 1)[0].strip().lower()
    return _MIME_ALIASES.get(mime, mime)


def too_large(size: int, max_size: int, provider: str | None) -> str:
    """The one sentence of a file over a size limit: "too large: 7.3 MiB, over novita's 5.0 MiB
    limit" (a local file's, a fetched one's: `preparing`)."""
    shown, limit = _human(size), _human(max_size)
    if max_size % 1_000_000 == 0 and max_size % (1 << 20):  # a decimal limit (ModelHunter's)
        shown, limit = f"{size / 1e6:.1f} MB", f"{max_size / 1e6:.1f} MB"
    if shown == limit:  # rounding hides the difference: show exact bytes
        shown, limit = f"{size:,} bytes", f"{max_size:,} bytes"
    whose = f"{provider}'s" if provider else "the provider's"
    return f"too large: {shown}, over {whose} {limit} limit"


def _human(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"
