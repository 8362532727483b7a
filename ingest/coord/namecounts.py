"""Same-name counts of one provider account, shared by every worker: Autoenhance's rule.

Owns `SharedNameCounts`, the `providers.context.SharedNames` of a coordinated
run. Autoenhance accepts at most 30 creates with one file name an hour; its
adapter tells that rule's bare 429 from a rate limit by counting the creates
it made. With N workers each saw only its own; here every create of a name
on the account (by any worker, any run on the same key) is one script call.

How it works: one hash per account (`BudgetKeys.names`), a field per name (a
64-bit digest of it, so any name costs the same), counting the creates of
the current server hour (`TIME`, so client clocks never matter); the first
call in a new hour empties it. A count is therefore the creates since the
hour began, all within the last hour: never more than the API's sliding
count, which is what the adapter needs (reaching 30 proves the rule). The
hash expires two windows after its last reset, so an idle account leaves
nothing behind.

Invariant: no name and no key reaches Redis in clear (a digest of each).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from ingest.coord.names import BudgetKeys
from ingest.providers.autoenhance_wire import SAME_NAME_WINDOW_S

if TYPE_CHECKING:
    from ingest.coord.connection import Connection

WINDOW_S = int(SAME_NAME_WINDOW_S)  # Autoenhance's same-name window: an hour

# KEYS: the names hash. ARGV: field, increment (0: read only), window seconds.
_COUNT = """
local now = redis.call('TIME')
local window = string.format('%d', math.floor(tonumber(now[1]) / tonumber(ARGV[3])))
if redis.call('HGET', KEYS[1], '@window') ~= window then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], '@window', window)
  redis.call('EXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
end
if ARGV[2] == '0' then
  return tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
end
return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
"""


def _field(name: str) -> str:
    return hashlib.blake2b(name.encode(), digest_size=8).hexdigest()


class SharedNameCounts:
    """Creates per file name on one account this server hour (a `SharedNames`)."""

    def __init__(self, conn: Connection, keys: BudgetKeys, window_s: int = WINDOW_S) -> None:
        self._conn = conn
        self._keys = keys
        self._window_s = window_s
        self._script = conn.client.register_script(_COUNT)

    async def _call(self, name: str, increment: int) -> int:
        args: list[str | int] = [_field(name), increment, self._window_s]
        reply = await self._conn.call(lambda: self._script(keys=[self._keys.names], args=args))
        return int(reply)

    async def add(self, name: str) -> int:
        return await self._call(name, 1)

    async def count(self, name: str) -> int:
        return await self._call(name, 0)
