"""Pushed pauses: a worker with no rate hears another's 429 by pub/sub, not by a poll.

Owns how a coordinated worker with no API rate (configured or learnt) obeys
the shared Retry-After pause without asking the budget before each call.
The budget's throttle script publishes "pause end, server now, learnt rate"
on the account's channel (`names.BudgetKeys.pushes`) every time it runs;
`PauseWatch` is subscribed on a connection of its own and hands each message
to the `SharedPacer` (`told`: no call starts until the pause's end, measured
from the message's arrival, so a pause is only ever lengthened by the
delivery's delay; a learnt rate makes the pacer ask the budget per call
again). This replaced a budget script every `budget.PAUSE_POLL_S` (50 ms)
per worker, whatever the call rate: ~40 % of one worker's coordination
overhead (benchmarks/README.md, "Scale-out on one machine").

How it works: after each (re)subscription is confirmed, the watch looks at
the budget once (`SharedPacer.look`), so a pause set before it listened, or
while its connection was down, is obeyed too. The watch is `live` only
while both hold:

- the subscription is the confirmed one and its socket has not ended: a
  connection the server closed (CLIENT KILL, a restart) is not live from
  the moment the event loop sees its end, before the watch's task has read
  it (redis-py then reconnects and resubscribes by itself: live again only
  once that confirmation came and the look after it was answered);
- it heard something (a message, a pong, a confirmation) within
  `HEARTBEAT_S` + `ANSWER_S`: an idle channel is pinged every `HEARTBEAT_S`,
  so a connection that went silent without closing counts as live for at
  most 0.75 s (it was 2.5 s).

Otherwise the pacer falls back to the poll until the watch is live again.
Every `REPORT_S` the watch reports the worker's successes to the budget (the
learnt rate's cycle counts them, as each poll used to), one script only when
there were calls.

Invariants: the pacer skips its poll only while the watch is live; a pause
heard is never shortened; a Redis error here only turns the watch off (the
poll then goes through `Connection.call`, whose bound stops the worker).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from ingest.clock import Clock
    from ingest.coord.budget import SharedPacer
    from ingest.coord.connection import Connection

HEARTBEAT_S = 0.5  # an idle subscription is pinged this often (two PINGs a second: ~0.4 ms CPU)
ANSWER_S = 0.25  # and counts as live this long after the ping was due
REPORT_S = 0.5  # successes are reported to the budget this often (while there are calls)


class PauseWatch:
    """One worker's subscription to its account's pauses; `await run()` in a task group."""

    def __init__(
        self,
        conn: Connection,
        pacer: SharedPacer,
        clock: Clock,
        *,
        heartbeat_s: float = HEARTBEAT_S,
        answer_s: float = ANSWER_S,
        report_s: float = REPORT_S,
    ) -> None:
        self._conn = conn
        self._pacer = pacer
        self._clock = clock
        self._heartbeat_s = heartbeat_s
        self._live_s = heartbeat_s + answer_s  # trusted this long after it was last heard
        self._report_s = report_s
        self._live_until = float("-inf")
        self._stream: Any = None  # the socket's reader the subscription was confirmed on
        self.heard = 0  # pauses pushed to this worker
        self.subscribed = 0  # (re)subscriptions confirmed
        pacer.watch = self

    def live(self, now: float) -> bool:
        """Every pause set since this watch last subscribed has reached the pacer."""
        if now >= self._live_until:
            return False
        stream = self._stream  # a closed or replaced socket: not since the loop saw it end
        return stream is not None and not stream.at_eof() and stream.exception() is None

    async def run(self) -> None:
        """Listen (and report) until cancelled; a lost subscription is made again."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._report)
            await self._watch()

    async def _report(self) -> None:
        while True:
            await anyio.sleep(self._report_s)
            await self._pacer.look(always=False)

    async def _watch(self) -> None:
        from redis.exceptions import RedisError

        delay = 0.05
        while True:
            try:
                await self._listen()
            except (RedisError, OSError):
                self._live_until, self._stream = float("-inf"), None  # the pacer polls meanwhile
                await anyio.sleep(delay)
                delay = min(1.0, delay * 2)

    async def _listen(self) -> None:
        pubsub = self._conn.client.pubsub()
        try:
            await pubsub.subscribe(self._pacer.budget.channel)
            while True:
                message: dict[str, Any] | None = await pubsub.get_message(timeout=self._heartbeat_s)
                if message is None:
                    await pubsub.ping()  # its pong (or nothing: no longer live) comes next
                    continue
                kind = message["type"]
                if kind == "subscribe":  # (re)subscribed: what was set meanwhile, once
                    self._live_until, self._stream = float("-inf"), None
                    stream = _stream(pubsub)  # the socket this confirmation came on
                    await self._pacer.look()
                    self._stream = stream
                    self.subscribed += 1
                elif kind == "message":
                    self._pacer.told(str(message["data"]))
                    self.heard += 1
                self._live_until = self._clock.now() + self._live_s
        finally:
            with anyio.CancelScope(shield=True):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py: untyped


def _stream(pubsub: Any) -> Any:
    """The reader of the subscription's socket (redis-py's asyncio connection keeps an
    `asyncio.StreamReader` as `_reader`; it is replaced on every reconnection). None when
    it has none: the watch is then never live and the pacer polls, as without a watch."""
    reader = getattr(pubsub.connection, "_reader", None)
    return reader if hasattr(reader, "at_eof") and hasattr(reader, "exception") else None
