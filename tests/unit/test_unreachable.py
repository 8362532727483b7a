"""An API that cannot be reached before it ever answered stops the run; after that it is an outage.

On the scripted provider and a fake clock: connection-refused errors (code
`unreachable`, as `ingest.http` classifies them) on the first calls stop the
run at once with `StopReason.UNREACHABLE`, no item failed and no retry spent;
the same errors after the API has answered are retried through the window
like any outage, and every item lands.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.clock import Clock, FakeClock
from ingest.config import RunSettings
from ingest.engine import StopReason
from ingest.errors import UNREACHABLE, Action, TransferError
from tests.fakeprovider import FakeProvider, run_engine, write_manifest
from tests.images import make_image

pytestmark = pytest.mark.anyio

KEYS = [f"k{i}" for i in range(10)]
RUN = RunSettings(api_concurrency=3, put_concurrency=2, lookahead=1, retry_window_s=60.0)


def refused(op: str) -> TransferError:
    return TransferError(
        "cannot reach http://127.0.0.1:9: connection refused",
        action=Action.RETRY,
        code=UNREACHABLE,
        provider="fake",
        op=op,
    )


class GoesAway(FakeProvider):
    """`op` (the API's acquire, or storage's transfer) answers `answered` calls,
    then refuses connections for `length` seconds."""

    def __init__(self, clock: Clock, *, answered: int, length: float, op: str = "acquire") -> None:
        super().__init__(clock)
        self._answered, self._length, self._op = answered, length, op
        self._gone_at: float | None = None

    async def _step(self, op: str, key: str) -> None:
        await super()._step(op, key)
        if op != self._op:
            return
        if self._gone_at is None and len(self.calls(op)) > self._answered:
            self._gone_at = self._clock.now()
        if self._gone_at is not None and self._clock.now() < self._gone_at + self._length:
            raise refused(op)


def manifest(tmp_path: Path) -> Path:
    make_image(tmp_path / "a.png", "png", 2_000, seed=1)
    return write_manifest(tmp_path / "m.jsonl", [{"path": "a.png", "id": k} for k in KEYS])


async def test_unreachable_from_the_start_stops_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = GoesAway(clock, answered=0, length=1e9)
    ran = await run_engine(tmp_path, provider, manifest(tmp_path), clock, run=RUN)
    assert ran.outcome.stop_reason is StopReason.UNREACHABLE
    message = ran.outcome.stop_message or ""
    assert message.startswith("cannot reach http://127.0.0.1:9: connection refused")
    counters = ran.outcome.counters
    assert counters.failed == 0 and counters.retries == 0  # nothing failed, no time spent
    assert counters.api_calls <= RUN.api_concurrency  # each API slot tried once at most
    assert clock.slept == 0.0
    assert not any(rec.get("s") == "fail" for rec in ran.journal.unfinished.values())


async def test_an_api_that_answered_then_went_away_is_an_outage(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = GoesAway(clock, answered=2, length=30.0)
    ran = await run_engine(tmp_path, provider, manifest(tmp_path), clock, run=RUN)
    assert ran.outcome.stop_reason is None
    assert ran.outcome.counters.failed == 0 and ran.outcome.counters.retries > 0
    assert all(ran.journal.is_done(key) for key in KEYS)
    assert clock.now() >= 1000.0 + 30.0  # the items waited the outage out


# -- storage: the hosts the upload URLs point at ------------------------------


async def test_storage_unreachable_from_the_start_stops_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = GoesAway(clock, answered=0, length=1e9, op="transfer")
    ran = await run_engine(tmp_path, provider, manifest(tmp_path), clock, run=RUN)
    assert ran.outcome.stop_reason is StopReason.UNREACHABLE
    message = ran.outcome.stop_message or ""
    assert message.startswith("cannot reach http://127.0.0.1:9: connection refused")
    assert "nothing was uploaded" in message and "\n" not in message
    counters = ran.outcome.counters
    assert counters.failed == 0 and counters.retries == 0
    assert counters.puts <= RUN.put_concurrency  # each PUT slot tried once at most
    assert clock.slept == 0.0  # not retried through the 60 s window
    assert not any(rec.get("s") == "fail" for rec in ran.journal.unfinished.values())


async def test_storage_that_answered_then_went_away_is_an_outage(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = GoesAway(clock, answered=2, length=30.0, op="transfer")
    ran = await run_engine(tmp_path, provider, manifest(tmp_path), clock, run=RUN)
    assert ran.outcome.stop_reason is None
    assert ran.outcome.counters.failed == 0 and ran.outcome.counters.retries > 0
    assert all(ran.journal.is_done(key) for key in KEYS)
    assert clock.now() >= 1000.0 + 30.0


async def test_a_closed_port_and_a_connect_timeout_are_both_unreachable(tmp_path: Path) -> None:
    """Through the real aiohttp storage session: refused at once; a connect that timed out."""
    import socket

    import aiohttp

    from ingest.http import Timeouts, map_errors, storage_session
    from ingest.storage import put_file

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/b/k.png?X-Amz-Signature=deadbeefdeadbeef"
    image = tmp_path / "a.png"
    make_image(image, "png", 500, seed=2)
    async with storage_session(Timeouts(connect=5.0), 2) as session:
        with pytest.raises(TransferError) as refused_put:
            await put_file(session, url, image, image.stat().st_size, "image/png", provider="fake")
    assert refused_put.value.code == UNREACHABLE
    assert refused_put.value.message == f"cannot reach http://127.0.0.1:{port}: connection refused"

    with pytest.raises(TransferError) as timed_out:
        async with map_errors("fake", "transfer", f"http://10.0.0.1:{port}"):
            raise aiohttp.ConnectionTimeoutError(f"Connection timeout to host {url}")
    assert timed_out.value.code == UNREACHABLE
    assert timed_out.value.message == f"cannot reach http://10.0.0.1:{port}: connection timed out"
    assert "deadbeef" not in str(timed_out.value) + str(timed_out.value.__cause__)
