"""The run's shared record: what is done, failed or rejected, by manifest line.

Owns the state `status`, `export` and every worker's "already done?" read.
Three bitmaps by manifest line (`SETBIT`: 1.25 MB each at 10^7 lines) say
done, failed and rejected; each shipped batch of results is one list entry
of JSON lines (key, line, remote id, url, size, extra; failures add the
action, code and message), not a key per item. `Shipper` is the engine's
observer in a coordinated run: the engine has journaled each outcome locally
before it hears of it (the worker's write-ahead log), and the shipper sends
outcomes to Redis in batches, each in one Lua script that sets the lines'
bits and appends only the records of lines not already set (a line redone
after a reclaim keeps its first record).

Invariants: a chunk is acknowledged only after `Shipper.flush` has shipped
every outcome of its lines; a line's bit is set only with its record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio
import orjson

from ingest.coord.names import RunKeys

if TYPE_CHECKING:
    from ingest.coord.connection import Connection
    from ingest.engine.outcomes import ItemDone, Observer
    from ingest.errors import ManifestError, TransferError

Kind = Literal["done", "failed", "rejected"]
BATCH = 256  # outcomes shipped in one script
FLUSH_S = 0.2  # and at least this often

# KEYS: bitmap, list. ARGV: line, record, line, record... Returns the records appended.
_SHIP = """
local fresh = {}
for i = 1, #ARGV, 2 do
  if redis.call('SETBIT', KEYS[1], ARGV[i], 1) == 0 then
    fresh[#fresh + 1] = ARGV[i + 1]
  end
end
if #fresh > 0 then
  redis.call('RPUSH', KEYS[2], table.concat(fresh, '\\n'))
end
return #fresh
"""


@dataclass(frozen=True, slots=True)
class Counts:
    """The run's counts, from the bitmaps."""

    done: int
    failed: int
    rejected: int


class Record:
    """Reads and writes of one run's record."""

    def __init__(self, conn: Connection, keys: RunKeys) -> None:
        self._conn = conn
        self._keys = keys
        self._ship = conn.client.register_script(_SHIP)

    def _bitmap(self, kind: Kind) -> str:
        return {"done": self._keys.done, "failed": self._keys.failed}.get(kind, self._keys.rejected)

    def _list(self, kind: Kind) -> str:
        return self._keys.results if kind == "done" else self._keys.failures

    async def ship(self, kind: Kind, outcomes: Sequence[tuple[int, str]]) -> int:
        """Record (line, JSON record) pairs of one kind; returns how many lines were new."""
        args: list[Any] = []
        for line, rec in outcomes:
            args += [line, rec]
        keys = [self._bitmap(kind), self._list(kind)]
        return int(await self._conn.call(lambda: self._ship(keys=keys, args=args)))

    async def settled(self, first: int, last: int) -> set[int]:
        """The lines in first..last that are done, failed or rejected (one round trip)."""
        lo, hi = first // 8, last // 8
        gets: list[Any] = []
        for i in range(lo, hi + 1):
            gets += ["GET", "u8", f"#{i}"]  # byte i of the bitmap (bit 0 is its high bit)
        pipe = self._conn.client.pipeline(transaction=False)
        for kind in ("done", "failed", "rejected"):
            pipe.execute_command("BITFIELD_RO", self._bitmap(kind), *gets)
        replies: list[Any] = await self._conn.call(pipe.execute)
        settled: set[int] = set()
        for data in replies:
            for line in range(first, last + 1):
                if int(data[line // 8 - lo]) & (0x80 >> (line % 8)):
                    settled.add(line)
        return settled

    async def counts(self) -> Counts:
        pipe = self._conn.client.pipeline(transaction=False)
        for kind in ("done", "failed", "rejected"):
            pipe.bitcount(self._bitmap(kind))
        done, failed, rejected = await self._conn.call(pipe.execute)
        return Counts(int(done), int(failed), int(rejected))

    async def records(self, kind: Kind) -> list[dict[str, Any]]:
        """Every record of `kind` ("done": the results; else the failures of that kind)."""
        batches: list[str] = await self._conn.call(
            lambda: self._conn.client.lrange(self._list(kind), 0, -1)
        )
        out = [orjson.loads(line) for batch in batches for line in batch.split("\n")]
        return out if kind == "done" else [r for r in out if r.get("kind") == kind]

    async def stop_message(self) -> str | None:
        """The message of a STOP-class error one worker met (every worker stops), if any."""
        value: str | None = await self._conn.call(lambda: self._conn.client.get(self._keys.stop))
        return value

    async def set_stop(self, message: str) -> None:
        await self._conn.call(lambda: self._conn.client.set(self._keys.stop, message, nx=True))


class Shipper:
    """The engine's observer in a coordinated run: outcomes to Redis, in batches.

    `forward` (the CLI's display, a caller's observer) hears every event too.
    Run `run()` in the worker's task group; `flush()` ships what is pending now.
    """

    def __init__(self, record: Record, forward: Observer | None = None) -> None:
        self.record = record
        self._forward = forward
        self._pending: dict[Kind, list[tuple[int, str]]] = {
            "done": [],
            "failed": [],
            "rejected": [],
        }
        self._wake = anyio.Event()
        self._lock = anyio.Lock()
        self.shipped = 0

    # -- the Observer protocol -----------------------------------------------

    def item_done(self, done: ItemDone) -> None:
        rec = {
            "k": done.key,
            "line": done.line,
            "id": done.landed.remote_id,
            "url": done.landed.url,
            "size": done.size,
        }
        if done.landed.extra:
            rec["extra"] = done.landed.extra
        self._add("done", done.line, rec)
        if self._forward is not None:
            self._forward.item_done(done)

    def item_failed(self, key: str, line: int, err: TransferError) -> None:
        rec = {
            "kind": "failed",
            "k": key,
            "line": line,
            "action": err.action.value,
            "code": err.code,
            "message": err.message,
        }
        self._add("failed", line, rec)
        if self._forward is not None:
            self._forward.item_failed(key, line, err)

    def item_rejected(self, key: str | None, err: ManifestError) -> None:
        if err.line is not None:
            self._add("rejected", err.line, {"kind": "rejected", "k": key, "line": err.line,
                                             "reason": err.reason})  # fmt: skip
        if self._forward is not None:
            self._forward.item_rejected(key, err)

    def item_changed(self, key: str, line: int) -> None:
        if self._forward is not None:
            self._forward.item_changed(key, line)

    # -- shipping ------------------------------------------------------------

    def _add(self, kind: Kind, line: int, rec: dict[str, Any]) -> None:
        self._pending[kind].append((line, orjson.dumps(rec).decode()))
        if sum(len(v) for v in self._pending.values()) >= BATCH:
            self._wake.set()

    async def flush(self) -> None:
        async with self._lock:
            for kind, outcomes in self._pending.items():
                while outcomes:
                    batch, self._pending[kind] = outcomes[:BATCH], outcomes[BATCH:]
                    outcomes = self._pending[kind]
                    await self.record.ship(kind, batch)
                    self.shipped += len(batch)

    async def run(self) -> None:
        """Ship every FLUSH_S, or as soon as a batch is full; until cancelled."""
        while True:
            with anyio.move_on_after(FLUSH_S):
                await self._wake.wait()
            self._wake = anyio.Event()
            await self.flush()
