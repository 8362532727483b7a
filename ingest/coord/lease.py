"""Leases on chunks: taken from the run's stream, renewed, reclaimed, acknowledged.

Owns who works on which chunk. A lease is ownership of the chunk's entry in
the consumer group's pending-entry list (PEL):

- `take` reads a new chunk (`XREADGROUP ... >`); when none is left it
  reclaims one idle for longer than the lease (`XAUTOCLAIM`, parsed in its
  full three-element form: redis-py's `justid=True` parse drops the cursor
  and the deleted ids). A chunk delivered more than `poison_after` times is
  given up as poison (recorded, counted finished) instead of crashing
  workers for ever.
- `renew` (every lease/3) re-claims, in one Lua script, only the entries
  this worker still owns (checked with XPENDING in the same script), which
  resets their idle time; it returns the ids still held.
- `ack` acknowledges a chunk in one script that first checks the owner
  (XACK itself does not) and counts it finished.
- `hand_back` gives an unfinished chunk back at once (this worker drains or
  stops): the entry is made to look idle for ten leases, without counting a
  delivery, so the next XAUTOCLAIM anywhere takes it.
- Fencing is local: `Lease.valid` is false once the last successful renewal
  is older than lease - margin on this process's monotonic clock, and a
  worker must then start nothing more on that chunk.

Invariants: a consumer is never deleted (XGROUP DELCONSUMER on one with
pending entries makes them unclaimable); no stream entry is deleted.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from ingest.coord import LEASE_S
from ingest.coord.names import GROUP, RunKeys
from ingest.coord.plan import Chunk

if TYPE_CHECKING:
    from ingest.coord.connection import Connection

MARGIN_S = 5.0  # a lease is given up this long before it could lapse
POISON_AFTER = 5  # deliveries of one chunk before it is given up

# KEYS: stream. ARGV: group, consumer, then ids. Re-claims only entries the consumer owns.
_RENEW = """
local kept = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    kept[#kept + 1] = ARGV[i]
  end
end
return kept
"""

# KEYS: stream. ARGV: group, consumer, id, idle ms. Makes an owned entry look long idle (so
# the next XAUTOCLAIM takes it at once) without counting a delivery; 0: not this consumer's.
_HAND_BACK = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 1 and p[1][2] == ARGV[2] then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'JUSTID')
  return 1
end
return 0
"""

# KEYS: stream, finished counter. ARGV: group, consumer, id. -1: not this consumer's.
_ACK = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 1 and p[1][2] == ARGV[2] then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
  return redis.call('INCR', KEYS[2])
end
return -1
"""


@dataclass(slots=True)
class Lease:
    """A chunk this worker holds, and when its lease was last known good."""

    chunk: Chunk
    deliveries: int
    renewed: float = field(default_factory=time.monotonic)  # local monotonic clock
    lost: bool = False  # another worker owns it now

    def valid(self, lease_s: float, margin_s: float) -> bool:
        return not self.lost and time.monotonic() - self.renewed < lease_s - margin_s


@dataclass(frozen=True, slots=True)
class Poisoned:
    """A chunk given up: delivered too often."""

    chunk: Chunk
    deliveries: int


class Leases:
    """One worker's leases on one run's chunks."""

    def __init__(
        self,
        conn: Connection,
        keys: RunKeys,
        consumer: str,
        *,
        lease_s: float = LEASE_S,
        margin_s: float = MARGIN_S,
        poison_after: int = POISON_AFTER,
    ) -> None:
        self._conn = conn
        self._keys = keys
        self.consumer = consumer
        self.lease_s = lease_s
        self.margin_s = min(margin_s, lease_s / 3)
        self._poison_after = poison_after
        self.held: dict[str, Lease] = {}
        client = conn.client
        self._renew = client.register_script(_RENEW)
        self._ack = client.register_script(_ACK)
        self._hand_back = client.register_script(_HAND_BACK)
        self.poisoned: list[Poisoned] = []

    async def take(self) -> Lease | None:
        """A chunk to work on: a new one, else one a dead worker left idle; None if neither."""
        lease = await self._new() or await self._reclaim()
        if lease is not None:
            self.held[lease.chunk.id] = lease
        return lease

    async def _new(self) -> Lease | None:
        c = self._conn.client
        reply: Any = await self._conn.call(
            lambda: c.xreadgroup(GROUP, self.consumer, {self._keys.chunks: ">"}, count=1)
        )
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                return Lease(Chunk.decode(entry_id, fields), 1)
        return None

    async def _reclaim(self) -> Lease | None:
        c = self._conn.client
        idle_ms = int(self.lease_s * 1000)
        cursor = "0-0"
        while True:
            # The full reply: [next cursor, [[id, fields], ...], [deleted ids]] (Redis >= 7.0).
            args = [self._keys.chunks, GROUP, self.consumer, idle_ms, cursor, "COUNT", 1]
            reply: Any = await self._conn.call(
                functools.partial(c.execute_command, "XAUTOCLAIM", *args)
            )
            cursor, claimed = str(reply[0]), reply[1]
            for entry_id, fields in claimed:
                if fields is None:
                    continue  # its entry was deleted: cannot happen, nothing deletes one
                chunk = Chunk.decode(entry_id, _pairs(fields))
                deliveries = await self._deliveries(entry_id)
                if deliveries > self._poison_after:
                    await self._give_up(Lease(chunk, deliveries))
                    continue
                return Lease(chunk, deliveries)
            if cursor == "0-0":
                return None

    async def _deliveries(self, entry_id: str) -> int:
        c = self._conn.client
        rows: Any = await self._conn.call(
            lambda: c.xpending_range(self._keys.chunks, GROUP, entry_id, entry_id, 1)
        )
        return int(rows[0]["times_delivered"]) if rows else 0

    async def _give_up(self, lease: Lease) -> None:
        record = orjson.dumps(
            {"first": lease.chunk.first, "last": lease.chunk.last, "deliveries": lease.deliveries}
        ).decode()
        await self._conn.call(lambda: self._conn.client.rpush(self._keys.poison, record))
        self.held[lease.chunk.id] = lease
        await self.ack(lease)
        self.poisoned.append(Poisoned(lease.chunk, lease.deliveries))

    async def renew(self) -> None:
        """Re-claim every chunk still held; a chunk another worker took is marked lost."""
        if not self.held:
            return
        now = time.monotonic()
        ids = list(self.held)
        kept: list[str] = await self._conn.call(
            lambda: self._renew(keys=[self._keys.chunks], args=[GROUP, self.consumer, *ids])
        )
        for entry_id in ids:
            lease = self.held.get(entry_id)
            if lease is None:
                continue
            if entry_id in kept:
                lease.renewed = now
            else:
                lease.lost = True

    async def ack(self, lease: Lease) -> bool:
        """Acknowledge a finished chunk; False if another worker owns it now."""
        args = [GROUP, self.consumer, lease.chunk.id]
        finished: int = await self._conn.call(
            lambda: self._ack(keys=[self._keys.chunks, self._keys.finished], args=args)
        )
        self.held.pop(lease.chunk.id, None)
        return finished >= 0

    def release(self, lease: Lease) -> None:
        """Stop renewing a chunk left unfinished: it goes back to the others when it lapses."""
        self.held.pop(lease.chunk.id, None)

    async def hand_back(self, lease: Lease) -> None:
        """Give an unfinished chunk back now (a drain, a stop): the next `take` anywhere gets it."""
        self.release(lease)
        idle_ms = int(self.lease_s * 1000) * 10
        args: list[str | int] = [GROUP, self.consumer, lease.chunk.id, idle_ms]
        await self._conn.call(lambda: self._hand_back(keys=[self._keys.chunks], args=args))

    async def finished(self) -> int:
        """Chunks acknowledged (or given up) so far, by every worker."""
        value: str | None = await self._conn.call(
            lambda: self._conn.client.get(self._keys.finished)
        )
        return int(value or 0)


def _pairs(fields: Any) -> dict[str, str]:
    """A stream entry's fields as XAUTOCLAIM's raw reply gives them: a flat list, or a dict."""
    if isinstance(fields, dict):
        return {str(k): str(v) for k, v in fields.items()}
    items = list(fields)
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items), 2)}
