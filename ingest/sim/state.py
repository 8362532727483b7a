"""What the emulator records: issued assets, stored objects and counters.

Owns the emulator's memory of the world, for tests and benchmarks to inspect
(in process through `SimState`, out of process through ``/_sim/objects`` and
``/_sim/stats``). Uploaded bytes are not kept here: storage hashes them as
they stream and keeps size and SHA-256 only (or writes them to `store_dir`
when one is configured); the one exception is an asset issued with
`keep_body` (a multipart part), whose body waits in `bodies` until the
provider route that assembles the parts takes it.

Invariants: an object exists only for a key that was issued, and only after a
PUT whose whole body arrived and was answered 200; `puts` counts those PUTs,
so a value above 1 means the same item landed more than once. Remote ids are
kept as strings whatever type the provider's JSON uses.

Everything here runs on the event loop's thread; no locking is needed. Every
change goes through a method, which wakes `wait_until` callers.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio


@dataclass(frozen=True, slots=True)
class IssuedAsset:
    """One upload target handed out by a provider route."""

    remote_id: str
    provider: str
    key: str  # "<bucket>/<object key>", decoded
    created: float  # emulator clock (possibly skewed), epoch seconds
    expires: float  # created + lifetime
    content_type: str | None  # the Content-Type the URL signs, or None if unsigned
    keep_body: bool = False  # storage keeps the body in `SimState.bodies` (multipart parts)


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object that landed in storage."""

    key: str
    size: int
    sha256: str
    puts: int
    remote_id: str
    content_type: str | None  # as received on the last successful PUT
    provider: str

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "size": self.size,
            "sha256": self.sha256,
            "puts": self.puts,
            "remote_id": self.remote_id,
            "content_type": self.content_type,
            "provider": self.provider,
        }


@dataclass(frozen=True, slots=True)
class SimStats:
    """A snapshot of the counters (see `SimState.stats`)."""

    api_requests: dict[str, dict[str, int]]  # "METHOD /route" -> status -> count
    api_429: int  # every 429 answered on an API route (injected or rate limited)
    api_rate_limited: int  # the part of api_429 due to the token bucket
    api_stalls: int
    storage_puts: dict[str, int]  # status -> count, for answered storage requests
    expired: int
    signature_mismatch: int
    resets: int
    storage_stalls: int
    chunked_rejected: int
    length_rejected: int
    incomplete_bodies: int  # bodies that ended before Content-Length
    storage_with_authorization: int
    storage_with_api_key: int
    storage_headers: dict[str, int]  # lower-case header name -> storage requests carrying it
    assets_issued: int
    objects: int

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class SimState:
    """The emulator's record. Mutated only by the emulator's routes."""

    def __init__(self) -> None:
        self.assets: dict[str, IssuedAsset] = {}  # remote id -> asset
        self.assets_by_key: dict[str, IssuedAsset] = {}  # key -> asset
        self.objects: dict[str, StoredObject] = {}  # key -> object
        self.bodies: dict[str, bytes] = {}  # key -> body, for assets issued with keep_body
        self.api_requests: Counter[tuple[str, int]] = Counter()
        self.storage_puts: Counter[int] = Counter()
        self.storage_headers: Counter[str] = Counter()
        self.events: Counter[str] = Counter()  # named counters, see `stats`
        self._changed: anyio.Event | None = None

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_until(self, predicate: Callable[[SimState], bool]) -> None:
        """Return once `predicate(self)` holds; re-checked after every recorded change."""
        while not predicate(self):
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    def issue(self, asset: IssuedAsset) -> None:
        self.assets[asset.remote_id] = asset
        self.assets_by_key[asset.key] = asset
        self._notify()

    def store(
        self,
        key: str,
        *,
        size: int,
        sha256: str,
        content_type: str | None,
        body: bytes | None = None,
    ) -> StoredObject:
        """Record a completed PUT of an issued key and return the object (and `body`, if given)."""
        asset = self.assets_by_key[key]
        if body is not None:
            self.bodies[key] = body
        previous = self.objects.get(key)
        obj = StoredObject(
            key=key,
            size=size,
            sha256=sha256,
            puts=(previous.puts if previous else 0) + 1,
            remote_id=asset.remote_id,
            content_type=content_type,
            provider=asset.provider,
        )
        self.objects[key] = obj
        self._notify()
        return obj

    def count(self, event: str, n: int = 1) -> None:
        """Add to a named counter (one of the plain counters of `SimStats`)."""
        self.events[event] += n
        self._notify()

    def count_api(self, route: str, status: int) -> None:
        """Count one answered API request under ``"<METHOD> <path>"``."""
        self.api_requests[(route, status)] += 1
        self._notify()

    def count_put(self, status: int) -> None:
        """Count one answered storage request."""
        self.storage_puts[status] += 1
        self._notify()

    def observe_storage_headers(self, names: set[str]) -> None:
        """Count the (lower-case) header names one storage request carried."""
        self.storage_headers.update(names)
        if "authorization" in names:
            self.events["storage_with_authorization"] += 1
        if "x-api-key" in names:
            self.events["storage_with_api_key"] += 1

    def object_for(self, remote_id: str) -> StoredObject | None:
        """The stored object of an issued asset, if its bytes landed."""
        asset = self.assets.get(remote_id)
        return self.objects.get(asset.key) if asset else None

    def stats(self) -> SimStats:
        api: dict[str, dict[str, int]] = {}
        for (route, status), n in sorted(self.api_requests.items()):
            api.setdefault(route, {})[str(status)] = n
        e = self.events
        return SimStats(
            api_requests=api,
            api_429=sum(n for (_, status), n in self.api_requests.items() if status == 429),
            api_rate_limited=e["api_rate_limited"],
            api_stalls=e["api_stalls"],
            storage_puts={str(s): n for s, n in sorted(self.storage_puts.items())},
            expired=e["expired"],
            signature_mismatch=e["signature_mismatch"],
            resets=e["resets"],
            storage_stalls=e["storage_stalls"],
            chunked_rejected=e["chunked_rejected"],
            length_rejected=e["length_rejected"],
            incomplete_bodies=e["incomplete_bodies"],
            storage_with_authorization=e["storage_with_authorization"],
            storage_with_api_key=e["storage_with_api_key"],
            storage_headers=dict(sorted(self.storage_headers.items())),
            assets_issued=len(self.assets),
            objects=len(self.objects),
        )
