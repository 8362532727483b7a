"""`retry-failed` of a shared run: its failed items made pending again, as new chunks.

Owns what `ingest retry-failed --coordinator URL --run-name NAME` changes in
the run's record before it works as a worker. A finished run's failed lines
(the failure records of kind "failed") are cut into new chunks, appended to
the run's stream, and in one script their failed bits are cleared, their
records dropped from the failures list (the rejected ones stay) and the
plan's chunk count raised: every worker from then on takes them as any
chunk. A line whose bytes landed before its finalize failed keeps its landed
record, so the worker that takes it finalizes it without uploading again.

How it works: everything is read first (the plan, the failures, the three
bitmaps), the new chunks computed here, then applied by `_APPLY`, which
checks that the plan and the failures list are as read (another retry, or a
worker shipping a failure meanwhile, makes it try again from the start).

Invariants: only a finished run is retried (a chunk in progress would redo
its own lines: a run in progress is left as it is, and the caller just
joins it); a new chunk spans only the failed
lines it lists and lines already settled between them (done or rejected:
skipped without an API call), never an unsettled line of another chunk (a
chunk given up as poison); no stream entry is deleted.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ingest.coord.plan import read_plan
from ingest.errors import ConfigError

if TYPE_CHECKING:
    from ingest.coord.connection import Connection
    from ingest.coord.names import RunKeys

ATTEMPTS = 5  # re-reads when the record changed between the read and the script

# KEYS: plan, failures list, failed bitmap, chunks stream.
# ARGV: plan as read, new plan, failures' length as read, kept batches (count, then each),
# lines to clear (count, then each), then one "first last count" per new chunk.
_APPLY = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('LLEN', KEYS[2]) ~= tonumber(ARGV[3]) then return 0 end
local i = 4
local kept = tonumber(ARGV[i])
redis.call('DEL', KEYS[2])
for j = i + 1, i + kept do
  redis.call('RPUSH', KEYS[2], ARGV[j])
end
i = i + kept + 1
local lines = tonumber(ARGV[i])
for j = i + 1, i + lines do
  redis.call('SETBIT', KEYS[3], ARGV[j], 0)
end
for j = i + lines + 1, #ARGV do
  redis.call('XADD', KEYS[4], '*', 'c', ARGV[j])
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class Retried:
    """What `make_pending` did: the failed items made pending, in how many new chunks."""

    items: int
    chunks: int
    total: int  # the run's chunks now, the new ones included
    in_progress: bool = False  # the run had not ended: nothing was changed


def _bit(bitmap: bytes, line: int) -> bool:
    byte = line // 8
    return byte < len(bitmap) and bool(bitmap[byte] & (0x80 >> (line % 8)))


def cut(lines: Sequence[int], settled: bytes, chunk_lines: int) -> list[tuple[int, int, int]]:
    """(first, last, count) chunks of the sorted `lines`: at most `chunk_lines` each, and a
    new one wherever a line between two of them is not `settled` (or the gap is long)."""
    chunks: list[tuple[int, int, int]] = []
    first = last = count = 0
    for line in lines:
        joined = count and count < chunk_lines and line - last <= chunk_lines
        if joined and all(_bit(settled, between) for between in range(last + 1, line)):
            last, count = line, count + 1
            continue
        if count:
            chunks.append((first, last, count))
        first, last, count = line, line, 1
    if count:
        chunks.append((first, last, count))
    return chunks


def _settled(bitmaps: Sequence[bytes | None]) -> bytes:
    """The bitwise OR of the done, failed and rejected bitmaps."""
    size = max((len(b) for b in bitmaps if b), default=0)
    union = 0
    for bitmap in bitmaps:
        union |= int.from_bytes((bitmap or b"").ljust(size, b"\0"))
    return union.to_bytes(size)


async def make_pending(conn: Connection, keys: RunKeys, chunk_lines: int) -> Retried:
    """Make the failed items of the finished run `keys.name` pending again, as new chunks.

    A run still in progress is left as it is (`in_progress`: its failed items
    are retried once it has ended); `ConfigError` when there is no such run.
    """
    script = conn.client.register_script(_APPLY)
    for _ in range(ATTEMPTS):
        plan = await read_plan(conn, keys)
        if plan is None:
            raise ConfigError(f"no run named {keys.name!r} on this coordinator")
        finished = int(await conn.call(lambda: conn.client.get(keys.finished)) or 0)
        if finished < int(plan["chunks"]):
            return Retried(0, 0, int(plan["chunks"]), in_progress=True)
        raw_plan: str = await conn.call(lambda: conn.client.get(keys.plan))
        batches: list[str] = await conn.call(lambda: conn.client.lrange(keys.failures, 0, -1))
        failed: set[int] = set()
        kept: list[str] = []
        for batch in batches:
            for line in batch.split("\n"):
                rec = orjson.loads(line)
                if rec.get("kind") == "failed":
                    failed.add(int(rec["line"]))
                else:
                    kept.append(line)
        pipe = conn.client.pipeline(transaction=False)
        for name in (keys.done, keys.failed, keys.rejected):
            pipe.execute_command("GET", name, NEVER_DECODE=True)
        bitmaps: list[bytes | None] = await conn.call(pipe.execute)
        chunks = cut(sorted(failed), _settled(bitmaps), chunk_lines)
        stored = orjson.loads(raw_plan)
        stored["chunks"] = int(stored["chunks"]) + len(chunks)
        args: list[Any] = [raw_plan, orjson.dumps(stored).decode(), len(batches)]
        args += [1, "\n".join(kept)] if kept else [0]
        args += [len(failed), *sorted(failed)]
        args += [f"{f} {last} {n}" for f, last, n in chunks]
        names = [keys.plan, keys.failures, keys.failed, keys.chunks]
        applied = await conn.call(functools.partial(script, keys=names, args=args))
        if int(applied):
            return Retried(len(failed), len(chunks), int(stored["chunks"]))
    raise ConfigError(
        f"run {keys.name!r} kept changing while its failed items were being retried: "
        "is a worker still running? Try again once it has ended"
    )
