"""Opt-in conversion (`--convert`): an image of a type the provider does not take, made into one it does.

Owns the conversion of one checked `Source` (HEIC, AVIF, TIFF, BMP, GIF, ...)
into PNG (when it has alpha) or JPEG (otherwise, at `convert_quality`), with
its EXIF orientation applied and, with `--max-side N`, downscaled so neither
side exceeds N; and the converter processes, memory budget and spool that do it.

How it works: `Converter.convert` (called by the engine's conversion lane,
`ingest.engine.lane`, through `ingest.preparing`) hands the source to a
converter process (`ingest.convert_child`, Pillow imported only there; the
process-wide pool of them is `ingest.convert_pool`), at most
`convert_workers` at once (a `CapacityLimiter`), from a thread that waits
on the process's pipe. Processes, not threads: a thread converting shared the GIL
and the CPU with the event loop, so one thread (all the uploads left room
for) did at most ~0.9 of a core of Pillow work and two starved the uploads
(0.64x their pace); a process shares no GIL and runs under ``SCHED_IDLE``
(`convert_child.lower_priority`), so the uploads' loop comes first,
and the lane lets more than one convert only while the uploads wait for
work (benchmarks/README.md, Convert). A local file is read by the
process itself (its path is sent); a shard's member or a fetched file (a
spool file is the parent's) is sent as bytes, raw after the job's frame
(`convert_child`). The process reads the header only and answers the bytes
decoding will take; the thread takes them from the `Budget`
(`convert_memory_mib`), waiting while other conversions hold it, before
the process decodes: an image that alone needs more is that item's
problem. A process that ends mid-conversion (killed, a decoder's crash) is
that item's failure; the next conversion starts a new one. So is
one still converting after `convert_timeout_s` (a decoder that hangs), its
time in the process counted but not its wait for the budget: the process is
killed (`convert_pool.Process.arm`) and the thread's read of its pipe ends. The
converted bytes come back raw after the answer, and are copied in `_CHUNK`s
(never whole in this process) to one spool file per item, without a name
(`ingest.spool`: a killed run leaves none behind), and the `Source` handed
on names that file (`member` None) under the original's key, mtime and a
display name with the new extension, so every reader of the data path (the
PUT, a multipart part, Scenario's base64 body) sends the converted bytes
unchanged. The spool file goes when the engine journals the item done or
failed (`forget`), the rest with the converter (`close`); the processes
are the pool's.

The provider's size limit applies to what is uploaded: an original of a type
converted passes the local checks whatever its size (`accepting` names those
types in `Capabilities.converts`), and the converted bytes are checked here;
one over the limit is the item's problem naming both sizes.

Invariants: conversion is deterministic (same bytes and settings, same
digest), so a resume converts the same way; the `Source` keeps the original's
size in `converted.size` (the journal's fingerprint is the original's, so a
re-run skips a done item without converting it again) and the converted
bytes' sha256 in `converted.digest` (journaled beside it); a failed
conversion is a `TransferError` (FAIL_ITEM, code ``convert_failed``) naming
the file, never a traceback; the event loop's process never imports Pillow
for a run (only `validate`'s `plan` reads headers in process).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import anyio

from ingest import convert_child as child
from ingest import convert_pool as pool
from ingest.capabilities import Capabilities
from ingest.errors import Action, ConfigError, TransferError, install_hint
from ingest.item import Converted, Item, Source
from ingest.journal.records import DoneRecord, UpRecord
from ingest.sniff import ImageType
from ingest.spool import Spool

R = TypeVar("R", UpRecord, DoneRecord)

# Every type `sniff` knows, Pillow decodes (HEIC through pillow-heif, AVIF built in
# from Pillow 11 or through pillow-avif-plugin).
DECODABLE = frozenset(ImageType)
_BY_EXT = {kind.ext: kind for kind in ImageType}
_EXT = {ImageType.JPEG: "jpg", ImageType.PNG: "png"}
_PROC_FD = Path("/proc/self/fd")  # a spool file's folder: this process's, not the child's


def accepting(caps: Capabilities) -> Capabilities:
    """`caps` as the local checks see them with `--convert`: every decodable type passes (the
    ones converted, `converts`, whatever their size: the limit is the converted bytes')."""
    converts = DECODABLE - caps.formats
    return dataclasses.replace(caps, formats=caps.formats | DECODABLE, converts=converts)


class Budget:
    """Bytes of decoded pixels that conversions in progress may hold (thread-safe, blocking)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._left = total
        self._cond = threading.Condition()

    def take(self, n: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._left >= n)
            self._left -= n

    def give_back(self, n: int) -> None:
        with self._cond:
            self._left += n
            self._cond.notify_all()

    @property
    def in_use(self) -> int:
        return self.total - self._left


class Converter:
    """Converts sources to a type in `formats`; one per run (it owns the spool and processes)."""

    def __init__(
        self,
        formats: frozenset[ImageType],
        *,
        provider: str,
        quality: int = 90,
        max_side: int = 0,
        workers: int = 0,
        memory_bytes: int = 512 << 20,
        max_size: int | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        if not formats & {ImageType.PNG, ImageType.JPEG}:
            raise ConfigError(f"--convert: {provider} takes neither PNG nor JPEG", key="convert")
        if not 1 <= quality <= 100:
            raise ConfigError(
                f"convert_quality must be 1 to 100, not {quality}", key="convert_quality"
            )
        if not timeout_s > 0:
            raise ConfigError(
                f"convert_timeout_s must be above 0, not {timeout_s:g}", key="convert_timeout_s"
            )
        if max_side < 0:
            raise ConfigError(f"max_side must be 0 (off) or more, not {max_side}", key="max_side")
        require_pillow()
        self.formats = formats
        self.provider = provider
        self.quality = quality
        self.max_side = max_side
        self.max_size = max_size
        self.timeout_s = timeout_s
        self.budget = Budget(memory_bytes)
        # As many processes as cores: at their lower priority they take what the uploads
        # leave (benchmarks/README.md, Convert).
        self.workers = workers or os.cpu_count() or 1
        self._limiter = anyio.CapacityLimiter(self.workers)
        self._spool = Spool("ingest-convert-")  # files without names (`ingest.spool`)
        self._exts = ",".join(sorted(kind.ext for kind in formats))
        self._image: Any = None  # Pillow in this process: `plan` (validate) only
        # The processes converting now, by item key, and the keys `stop` was called for.
        self._busy: dict[str, pool.Process] = {}
        self._stopping: set[str] = set()
        self._busy_lock = threading.Lock()

    def needs(self, source: Source) -> bool:
        return source.image_type not in self.formats

    def plan(self, source: Source) -> ImageType | str:
        """What `source` would become, from its header only (for `validate`), or why not
        (the reason a run's `convert_failed` gives: `_fail`'s wording)."""
        try:
            if self._image is None:
                self._image = child.pillow()
            data, ext = _bytes_of(source), source.image_type.ext
            with child.quiet(), child.open_image(self._image, data, ext) as im:
                if (short := child.cut_short(data, ext)) is not None:  # as the run's process
                    return f"cannot convert {ext}: {short}: {source.item.where}"
                exts = frozenset(self._exts.split(","))
                return self._kind(child.target_type(im.mode, im.info, exts))
        except Exception as exc:  # decoders raise many types
            why = child.reason(exc)
            return f"cannot convert {source.image_type.ext}: {why}: {source.item.where}"

    async def convert(self, source: Source) -> Source:
        """`source` converted and spooled, in a converter process; `TransferError` if not."""
        return await anyio.to_thread.run_sync(self._convert, source, limiter=self._limiter)

    def stop(self, key: str) -> None:
        """The conversion of `key` stopped now, its process killed (the run is being stopped:
        `engine.lane`); it then fails as a process that ended does."""
        with self._busy_lock:
            self._stopping.add(key)
            process = self._busy.get(key)
        if process is not None:
            process.stop()

    def forget(self, key: str) -> None:
        """The item is journaled done or failed: its spool file goes."""
        self._spool.forget(key)

    def close(self) -> None:
        """The spool goes (the converter processes are the pool's: `ingest.convert_pool`)."""
        self._spool.close()

    @property
    def spooled(self) -> int:
        """Items whose converted bytes are in the spool now."""
        return len(self._spool)

    def _kind(self, ext: str) -> ImageType:
        return _BY_EXT[ext]

    def _fail(self, source: Source, why: str) -> TransferError:
        return TransferError(
            f"cannot convert {source.image_type.ext}: {why}: {source.item.where}",
            action=Action.FAIL_ITEM,
            code="convert_failed",
            provider=self.provider,
            op="convert",
        )

    def _convert(self, source: Source) -> Source:
        try:
            process = pool.take()
        except (pool.Gone, OSError) as exc:
            raise self._fail(source, f"no converter process could start ({exc})") from None
        key = source.item.key
        with self._busy_lock:
            self._busy[key] = process
            if key in self._stopping:
                process.stop()
        try:
            converted = self._exchange(process, source)
        except (pool.Gone, TransferError) as exc:
            if isinstance(exc, TransferError) and not (process.overdue or process.stopped):
                pool.give(process)  # it answered: ready for the next image
                raise
            self._spool.forget(source.item.key)
            pool.drop(process)
            why = f"its converter process ended ({exc})"
            if process.overdue:
                why = (f"still converting after convert_timeout_s ({self.timeout_s:g} s): its "
                       "converter process was stopped")  # fmt: skip
            raise self._fail(source, why) from None
        except BaseException:
            pool.drop(process)  # out of step, perhaps: not to be trusted with another
            raise
        finally:
            with self._busy_lock:
                self._busy.pop(key, None)
                self._stopping.discard(key)
        (pool.drop if process.stopped else pool.give)(process)  # killed: never given again
        return converted

    def _exchange(self, process: pool.Process, source: Source) -> Source:
        """`source` converted by `process` (see the module) and spooled."""
        item = source.item
        read_at: str | None = None
        data: bytes | None = None
        if source.body is None and item.member is None and item.path.parent != _PROC_FD:
            read_at = os.path.abspath(item.path)  # it reads the file itself
        else:
            try:
                data = _bytes_of(source)
            except OSError as exc:
                raise self._fail(source, f"cannot read it ({exc.strerror or exc})") from None
        sent = None if data is None else len(data)  # its bytes follow the frame, raw
        job = (read_at, sent, source.size, source.image_type.ext)
        with _limit(process, self.timeout_s):
            process.tell("open", *job, self._exts, self.quality, self.max_side, raw=data or b"")
            answer = process.ask()
        if answer[0] == "fail":
            raise self._fail(source, answer[1])
        _, width, height, need = answer
        if need > self.budget.total:
            process.tell("skip")
            raise self._fail(
                source,
                f"{width}x{height} pixels need about {-(-need >> 20)} MiB to convert, "
                f"over convert_memory_mib ({self.budget.total >> 20}; or --max-side)",
            )
        took = process.spent_s  # its own: not a wait for a CPU (`convert_pool.Process.arm`)
        self.budget.take(need)
        with _limit(process, self.timeout_s - took):  # the wait for memory is not the child's
            return self._finish(process, source, need)

    def _finish(self, process: pool.Process, source: Source, need: int) -> Source:
        """The decode and encode (`need` bytes taken), and the converted bytes spooled."""
        item = source.item
        try:
            answer = process.ask("go")
        finally:
            self.budget.give_back(need)
        if answer[0] == "fail":
            raise self._fail(source, answer[1])
        _, ext, digest, size = answer
        kind = self._kind(ext)
        if self.max_size is not None and size > self.max_size:  # what is uploaded
            process.copy(None, size)
            raise self._fail(
                source,
                f"converted {kind.ext} is {size:,} bytes (from {source.size:,} bytes of "
                f"{source.image_type.ext}), over {self.provider}'s {self.max_size:,}-byte "
                "limit (try --max-side)",
            )
        # One file per key: two items may convert to the same bytes and must not share a file.
        fd, path = self._spool.create(item.key)
        if (error := process.copy(fd, size)) is not None:
            self._spool.forget(item.key)
            raise self._fail(source, f"cannot spool it ({error.strerror or error})")
        name = PurePosixPath(item.display_name).stem + "." + _EXT[kind]
        return Source(
            item=dataclasses.replace(item, path=path, member=None, name=name, content_type=None),
            size=size,
            mtime_ns=source.mtime_ns,
            image_type=kind,
            converted=Converted(original=source.image_type, size=source.size, digest=digest),
        )


@contextlib.contextmanager
def _limit(process: pool.Process, seconds: float) -> Iterator[None]:
    """What `process` does within, killed past `seconds` (`Gone`, `process.overdue`)."""
    process.arm(seconds)
    try:
        yield
    finally:
        in_time = process.disarm()
    if not in_time:  # it answered, but only as its time ran out: killed all the same
        raise pool.Gone("killed by SIGKILL")


def _bytes_of(source: Source) -> bytes:
    """The original's bytes: read ahead, a shard's member, or the file."""
    if source.body is not None:
        return source.body
    item: Item = source.item
    if item.member is not None:
        from ingest.manifest.packed.access import read_member

        return read_member(item.path, item.member, item.member.length)
    with item.path.open("rb") as fh:
        return fh.read()


def require_pillow() -> None:
    """`ConfigError` unless Pillow can be imported (it is imported only where it converts)."""
    if importlib.util.find_spec("PIL") is None:
        raise ConfigError(f"--convert needs Pillow: {install_hint('convert')}")


def converter_for(caps: Capabilities, provider: str, run: Any) -> Converter | None:
    """The run's converter with `--convert` (`run` is the `[run]` settings), else None."""
    if not run.convert:
        return None
    return Converter(
        caps.formats,
        provider=provider,
        quality=run.convert_quality,
        max_side=run.max_side,
        workers=run.convert_workers,
        memory_bytes=run.convert_memory_mib << 20,
        max_size=caps.max_size,
        timeout_s=run.convert_timeout_s,
    )


def with_conversion(rec: R, source: Source | None) -> R:
    """`rec` (an ``up`` or ``done`` record) with ``cv``: "heic sha256:HEX" when converted."""
    if source is not None and source.converted is not None:
        rec["cv"] = f"{source.converted.original.ext} sha256:{source.converted.digest}"
    return rec
