"""A canned provider API for adapter unit tests: no sockets, every call recorded.

`FakeApi` stands in for the API `Session` an adapter's
`Context` holds; it answers each `request()` with the next queued `Canned`
response (JSON body, status, headers) and keeps what was sent. `source`
writes a real JPEG, so the same `Source` can also be uploaded to the emulator.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson

from ingest.config import DEFAULT_PROVIDERS, ProviderSettings
from ingest.item import Item, Source
from ingest.providers.context import Context
from ingest.sniff import ImageType
from ingest.transport.session import Session
from tests.images import image_bytes


@dataclass(frozen=True)
class Canned:
    status: int
    body: Any = None  # JSON-encoded unless bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def raw(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return b"" if self.body is None else orjson.dumps(self.body)


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    json: Any
    headers: Mapping[str, str]


class _Answer:
    def __init__(self, canned: Canned) -> None:
        self.status = canned.status
        self.headers = dict(canned.headers)
        self._body = canned.raw()
        self.content = self  # as aiohttp's answer: its body is read from `content`

    async def read(self) -> bytes:
        return self._body

    async def iter_any(self) -> AsyncIterator[bytes]:  # `StreamReader.iter_any`
        yield self._body

    async def __aenter__(self) -> _Answer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class FakeApi:
    lean = None  # as a `Session` without a lean pool: calls come to `request`
    base_url = None  # paths are sent as they are
    limit = 8

    def __init__(self, *answers: Canned) -> None:
        self.answers = deque(answers)
        self.sent: list[Sent] = []

    def request(
        self, method: str, path: str, *, data: bytes | None, headers: Any, allow_redirects: bool
    ) -> _Answer:
        body = orjson.loads(data) if data else None
        self.sent.append(Sent(method, path, body, dict(headers or {})))
        return _Answer(self.answers.popleft())


def context(
    api: FakeApi, provider: str, params: Mapping[str, str] | None = None, **settings: Any
) -> Context:
    """A `Context` whose API session is `api` (no storage session: transfers are not faked)."""
    base: ProviderSettings = DEFAULT_PROVIDERS[provider]
    return Context(
        api=cast(Session, api),
        storage=cast(Session, None),
        settings=dataclasses.replace(base, **settings),
        params=dict(params or {}),
    )


def source(tmp: Path, name: str = "photo.jpg", size: int = 1234) -> Source:
    """A JPEG of `size` bytes written to ``tmp/name``, as validation would hand it on."""
    path = tmp / name
    path.write_bytes(image_bytes("jpeg", size, seed=len(name) + size))
    item = Item(key=name, path=path, line=1)
    return Source(item=item, size=size, mtime_ns=path.stat().st_mtime_ns, image_type=ImageType.JPEG)
