"""A remote source's body on its way: the answer a fetch opened, checked as it is read.

Owns what every reader of a remote body checks, chunk by chunk (`checked`):
no more and no fewer bytes than the source said (Content-Length, the
object's size: a body cut short of it is a dropped connection, retried),
and, of a body that arrived whole, what a local file's check rejects
(`reject`, in its words): nothing over the provider's limit (`too_large`),
nothing empty, and a PNG or JPEG whose last bytes are not cut short
(`sniff.truncation`), checked on the last chunk *before* it is handed on; and
`RemoteBody`, the `Streamed` body of a source whose length is known, which
the PUT reads as it sends (`storage.put_stream`).

How it works: `ingest.remote` opens the answer and reads its first chunk
(`Opened.head`: the type is sniffed from it before the target is signed);
the PUT then sends that chunk and what follows it, straight from the
source's socket, so nothing is spooled and memory stays at a few chunks per
PUT in flight. A problem (the source died, sent too little or too much, or
the image is cut) raises before the chunk it concerns goes out: storage sees
a body shorter than its Content-Length and keeps nothing (and a cut image is
rejected, though its PUT had sent all but its last chunk). A source is read
once per pass: a retry or a re-sign of the PUT fetches it again (`reopen`),
and a source whose size or type changed in between fails its item.

Invariants: an opened answer is closed when its pass ends, when the item is
journaled (`close`), or when the run ends; a message names the source only
by `Item.where` (no userinfo, no signed query).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from ingest.errors import Action, TransferError
from ingest.item import Item
from ingest.sniff import TAIL_BYTES, ImageType, sniff, truncation

Fail = Callable[[Item, str, Action], TransferError]
TooLarge = Callable[[Item, int], TransferError]  # a body past the limit, its bytes so far
# A whole body that a local file's check rejects: (item, that check's reason, code).
Reject = Callable[[Item, str, str], TransferError]


@dataclass(slots=True)
class Opened:
    """A source's answer with its first chunk read: what follows, and how to let it go."""

    length: int | None  # Content-Length, the object's size; None: not said (chunked)
    head: bytes  # the first chunk (at least enough to sniff, unless the body is shorter)
    rest: AsyncIterator[bytes]
    close: Callable[[], None]


async def checked(
    item: Item,
    opened: Opened,
    kind: ImageType,
    *,
    max_size: int | None,
    fail: Fail,
    too_large: TooLarge,
    reject: Reject,
) -> AsyncGenerator[bytes, None]:
    """`opened`'s chunks, head first, each checked before it is handed on (see the module)."""
    length, sent, tail = opened.length, 0, b""

    async def chunks() -> AsyncGenerator[bytes, None]:
        yield opened.head
        async for chunk in opened.rest:
            yield chunk

    async for chunk in chunks():
        if not chunk:
            continue
        sent += len(chunk)
        if length is not None and sent > length:  # first: a said length was within the limit
            raise fail(item, f"source sent more than its {length:,} bytes", Action.RETRY)
        if max_size is not None and sent > max_size:
            raise too_large(item, sent)
        tail = chunk[-TAIL_BYTES:] if len(chunk) >= TAIL_BYTES else (tail + chunk)[-TAIL_BYTES:]
        if sent == length:  # the last chunk: is the image whole?
            check_tail(item, kind, tail, sent, reject)
        yield chunk
    if sent == 0 or (length is not None and sent < length):
        raise ended_short(item, sent, length, fail, reject)
    if length is None:  # a spooled body: checked once it is all there
        check_tail(item, kind, tail, sent, reject)


def ended_short(
    item: Item, sent: int, length: int | None, fail: Fail, reject: Reject
) -> TransferError:
    """A body that ended after `sent` bytes, empty or short of its said `length`.

    Short of its length, the connection dropped: a retry fetches it again.
    Empty as said (a length of 0, or none said and none sent), it is an empty
    file: rejected, as a local one is.
    """
    if length is not None and sent < length:
        return fail(item, cut_short(sent, length), Action.RETRY)
    from ingest.validate import EMPTY  # as `not_an_image`: only when one is

    return reject(item, EMPTY, "empty")


def cut_short(sent: int, length: int) -> str:
    """A body that ended after `sent` of its said `length` bytes, as every reader says it."""
    return f"source body cut short: {sent} of {length} bytes"


def check_tail(item: Item, kind: ImageType, tail: bytes, size: int, reject: Reject) -> None:
    """A whole body that is a cut PNG or JPEG is rejected, with the reason a local file gets."""
    cut = truncation(kind, tail, whole=size <= TAIL_BYTES)
    if cut is not None:
        raise reject(item, cut, "truncated")


class RemoteBody:
    """A remote source of known length, read as its PUT sends it (`item.Streamed`).

    `reopen` fetches the source again for a later pass; `failure` turns what
    reading it raised (aiohttp's, botocore's errors) into the item's `TransferError`.
    """

    __slots__ = (
        "_fail",
        "_failure",
        "_live",
        "_pending",
        "_reject",
        "_reopen",
        "_too_large",
        "item",
        "kind",
        "max_size",
        "size",
    )

    def __init__(
        self,
        item: Item,
        opened: Opened,
        kind: ImageType,
        *,
        max_size: int | None,
        reopen: Callable[[Item], Awaitable[Opened]],
        fail: Fail,
        too_large: TooLarge,
        reject: Reject,
        failure: Callable[[Item, Exception], TransferError],
    ) -> None:
        assert opened.length is not None
        self.item, self.kind, self.size, self.max_size = item, kind, opened.length, max_size
        self._pending: Opened | None = opened  # the first pass sends what the fetch opened
        self._live: Opened | None = None
        self._reopen, self._fail, self._failure = reopen, fail, failure
        self._too_large, self._reject = too_large, reject

    async def chunks(self, problems: list[BaseException]) -> AsyncGenerator[bytes, None]:
        opened, self._pending = self._pending, None
        try:
            if opened is None:
                opened = await self._again()
            self._live = opened
            async for chunk in checked(
                self.item,
                opened,
                self.kind,
                max_size=self.max_size,
                fail=self._fail,
                too_large=self._too_large,
                reject=self._reject,
            ):
                yield chunk
        except TransferError as err:
            problems.append(err)
            raise
        except Exception as exc:  # the source's transport: aiohttp's or botocore's errors
            failed = self._failure(self.item, exc)
            problems.append(failed)
            raise failed from None
        finally:
            self._live = None
            if opened is not None:
                opened.close()

    async def _again(self) -> Opened:
        """The source fetched again (a retry or a re-sign): the same size and type, or no pass."""
        opened = await self._reopen(self.item)
        kind = sniff(opened.head)
        if opened.length != self.size or kind is not self.kind:
            opened.close()
            now = f"{opened.length:,} bytes" if opened.length is not None else "no length"
            was = f"{self.size:,}-byte {self.kind.ext}"
            raise self._fail(
                self.item,
                f"source changed since it was first fetched ({now}, {kind.ext if kind else '?'}; "
                f"was a {was})",
                Action.FAIL_ITEM,
            )
        return opened

    def close(self) -> None:
        """The item is journaled, or the run ends: an answer still open is let go."""
        for opened in (self._pending, self._live):
            if opened is not None:
                opened.close()
        self._pending = self._live = None
