"""The run's shared record: what is done, failed or rejected, by manifest line.

Owns the state `status`, `export` and every worker's "already done?" read.
Three bitmaps by manifest line (`SETBIT`: 1.25 MB each at 10^7 lines) say
done, failed and rejected; each shipped batch of results is one list entry
of JSON lines (key, line, remote id, url, size, extra; failures add the
action, code and message), not a key per item. `Shipper` is the engine's
observer in a coordinated run: the engine has journaled each outcome locally
before it hears of it (the worker's write-ahead log), and the shipper sends
outcomes to Redis in batches (full, or FLUSH_S after the first pending), each in one Lua script that sets the lines'
bits and appends only the records of lines not already set (a line redone
after a reclaim keeps its first record).

Landed, not finalized (ModelHunter's complete, Scenario's attach): when the
engine journals `up`, the shipper sends that record (key, remote id, size,
mtime, extra: what finalize needs; never a URL or a secret) to a hash by
line, in the same batches, before the outcomes of the same flush. A done
line's entry is deleted by the script that sets its done bit, so the hash
holds only items between their PUT and their finalize (and those whose
finalize failed): a few per worker in flight, not one per item of the run.
Whoever takes the chunk next (`chunk_state`) hands those records to the
engine as a resumed journal would (`coord.landing`): finalized, not
uploaded again.

Invariants: a chunk is acknowledged only after `Shipper.flush` has shipped
every outcome of its lines; a line's bit is set only with its record; a
landed record is never stored for a line already done.
"""

from __future__ import annotations

import functools
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
    from ingest.journal.records import UpRecord

Kind = Literal["done", "failed", "rejected"]
BATCH = 256  # outcomes shipped in one script: a full batch goes at once
# and no outcome waits longer than this (a SIGKILLed worker's last FLUSH_S of outcomes, at
# most BATCH, are redone by the chunk's next taker). 0.2 s cost ~5 scripts a second however
# few the outcomes: ~20 % of one worker's coordination overhead (benchmarks/README.md).
FLUSH_S = 1.0

# KEYS: bitmap, list[, landed hash: done lines are finalized]. ARGV: line, record, line,
# record... Returns the records appended.
_SHIP = """
local fresh = {}
for i = 1, #ARGV, 2 do
  if redis.call('SETBIT', KEYS[1], ARGV[i], 1) == 0 then
    fresh[#fresh + 1] = ARGV[i + 1]
  end
  if KEYS[3] then
    redis.call('HDEL', KEYS[3], ARGV[i])
  end
end
if #fresh > 0 then
  redis.call('RPUSH', KEYS[2], table.concat(fresh, '\\n'))
end
return #fresh
"""

# KEYS: done bitmap, landed hash. ARGV: line, `up` record... Lines already done are left out.
_LAND = """
for i = 1, #ARGV, 2 do
  if redis.call('GETBIT', KEYS[1], ARGV[i]) == 0 then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
return 0
"""


# KEYS: done, failed, rejected bitmaps, landed hash. ARGV: first byte, last byte, first line,
# last line. Returns {the bitmaps' bytes ORed, as hex; landed line, record, line, record...}.
_STATE = """
local lo, hi = tonumber(ARGV[1]), tonumber(ARGV[2])
local maps = {}
for k = 1, 3 do maps[k] = redis.call('GETRANGE', KEYS[k], lo, hi) end
local hex = {}
for i = 1, hi - lo + 1 do
  local b = 0
  for k = 1, 3 do b = bit.bor(b, string.byte(maps[k], i) or 0) end
  hex[i] = string.format('%02x', b)
end
local first, last = tonumber(ARGV[3]), tonumber(ARGV[4])
local landed = {}
if redis.call('HLEN', KEYS[4]) <= last - first + 1 then
  landed = redis.call('HGETALL', KEYS[4])
else
  for line = first, last do
    local rec = redis.call('HGET', KEYS[4], line)
    if rec then
      landed[#landed + 1] = tostring(line)
      landed[#landed + 1] = rec
    end
  end
end
return {table.concat(hex), landed}
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
        self._land = conn.client.register_script(_LAND)
        self._state = conn.client.register_script(_STATE)

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
        if kind == "done":
            keys.append(self._keys.landed)
        return int(await self._conn.call(lambda: self._ship(keys=keys, args=args)))

    async def land(self, landed: Sequence[tuple[int, str]]) -> None:
        """Record (line, `up` record JSON) pairs of items whose bytes landed, not finalized."""
        args: list[Any] = [part for pair in landed for part in pair]
        keys = [self._keys.done, self._keys.landed]
        await self._conn.call(lambda: self._land(keys=keys, args=args))

    async def settled(self, first: int, last: int) -> set[int]:
        """The lines in first..last that are done, failed or rejected (one round trip)."""
        settled, _ = await self.chunk_state(first, last)
        return settled

    async def chunk_state(self, first: int, last: int) -> tuple[set[int], dict[int, str]]:
        """The settled lines in first..last, and the landed records of the others (one script).

        The script ORs the three bitmaps' bytes for the range and sends them as hex (a
        chunk of 1,000 lines: 250 characters), with the landed hash's entries in the
        range: the whole hash while it holds no more than the range has lines (it holds
        only items in flight between PUT and finalize), else a look per line."""
        lo, hi = first // 8, last // 8
        keys = [self._bitmap("done"), self._bitmap("failed"), self._bitmap("rejected")]
        keys.append(self._keys.landed)
        hexed, pairs = await self._conn.call(
            lambda: self._state(keys=keys, args=[lo, hi, first, last])
        )
        bits = bytes.fromhex(hexed)
        settled = {
            line for line in range(first, last + 1) if bits[line // 8 - lo] & (0x80 >> (line % 8))
        }
        landed: dict[int, str] = {}
        for i in range(0, len(pairs), 2):
            line = int(pairs[i])
            if first <= line <= last and line not in settled:
                landed[line] = pairs[i + 1]
        return settled, landed

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

    async def done_texts(self, page: int) -> dict[int, str]:
        """Each done line's record, as its JSON text, read `page` batches a round trip.

        Text, not parsed, until a caller needs it: ~200 bytes an item held where a
        parsed record takes ~3 times that. A line has one record (`_SHIP` appends
        only the records of lines it sets); were there more, the first is kept."""
        out: dict[int, str] = {}
        start = 0
        while True:
            read = functools.partial(
                self._conn.client.lrange, self._keys.results, start, start + page - 1
            )
            batches: list[str] = await self._conn.call(read)
            for batch in batches:
                for text in batch.split("\n"):
                    out.setdefault(int(orjson.loads(text)["line"]), text)
            if len(batches) < page:
                return out
            start += page

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
        self._landed: list[tuple[int, str]] = []  # `up` records: shipped before the outcomes
        self._any = anyio.Event()  # something is pending
        self._wake = anyio.Event()  # a batch is full
        self._lock = anyio.Lock()
        self.shipped = 0
        self.flushes = 0

    # -- the Observer protocol -----------------------------------------------

    def item_done(self, done: ItemDone) -> None:
        rec: dict[str, Any] = {"k": done.key, "line": done.line, "id": done.landed.remote_id}
        if done.landed.url is not None:  # absent, not null: 11 bytes of every Novita record
            rec["url"] = done.landed.url
        rec["size"] = done.size
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

    def landed(self, line: int, up: UpRecord) -> None:
        """The engine journaled `up` for the item of `line`: its bytes landed, finalize is left."""
        self._landed.append((line, orjson.dumps(up).decode()))
        self._added(len(self._landed))

    # -- shipping ------------------------------------------------------------

    def _add(self, kind: Kind, line: int, rec: dict[str, Any]) -> None:
        self._pending[kind].append((line, orjson.dumps(rec).decode()))
        self._added(sum(len(v) for v in self._pending.values()))

    def _added(self, pending: int) -> None:
        self._any.set()  # the oldest pending outcome's FLUSH_S starts (if not yet running)
        if pending >= BATCH:
            self._wake.set()

    async def flush(self) -> None:
        """Ship what is pending now, in batches of BATCH; what comes meanwhile waits for the
        next flush (chasing it made a batch of the few outcomes of each round trip: 233
        scripts for 5,000 outcomes, not 20). A batch not shipped stays pending."""
        async with self._lock:
            landed, self._landed = self._landed, []
            pending = {kind: outcomes for kind, outcomes in self._pending.items() if outcomes}
            for kind in pending:
                self._pending[kind] = []
            try:
                while landed:  # before the outcomes: a done line's entry is then deleted
                    await self.record.land(landed[:BATCH])
                    landed = landed[BATCH:]
                for kind, outcomes in pending.items():
                    while outcomes:
                        await self.record.ship(kind, outcomes[:BATCH])
                        self.shipped += min(BATCH, len(outcomes))
                        outcomes = pending[kind] = outcomes[BATCH:]
            finally:
                self._landed[:0] = landed
                for kind, outcomes in pending.items():
                    self._pending[kind][:0] = outcomes
            self.flushes += 1

    async def run(self) -> None:
        """Ship FLUSH_S after the first outcome pending, or as soon as a batch is full;
        nothing while nothing is pending; until cancelled."""
        while True:
            await self._any.wait()
            with anyio.move_on_after(FLUSH_S):
                await self._wake.wait()
            self._any, self._wake = anyio.Event(), anyio.Event()  # what comes now: the next
            await self.flush()
