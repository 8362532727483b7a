"""The coordinator's parts against a real redis-server: plan, leases, record, budget."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import anyio
import pytest

from ingest import manifest as manifest_package
from ingest.coord.budget import Budget
from ingest.coord.connection import Connection, connect
from ingest.coord.entries import ChunkReader
from ingest.coord.lease import Lease, Leases
from ingest.coord.names import BudgetKeys, RunKeys, account_digest
from ingest.coord.plan import (
    Layout,
    RunMismatch,
    binding,
    join_run,
    lay_out,
    plan_run,
    read_layout,
)
from ingest.coord.record import Record

pytestmark = pytest.mark.anyio
KEYS = RunKeys("t")


@pytest.fixture
async def conn(redis_url: str) -> AsyncIterator[Connection]:
    async with connect(redis_url) as c:
        yield c


def _layout(n: int, size: int = 10) -> Layout:
    starts = range(1, n + 1, size)
    chunks = tuple((f, min(f + size - 1, n), min(size, n - f + 1)) for f in starts)
    return Layout("d" * 64, n, chunks)


async def test_planned_once_and_a_different_manifest_is_refused(conn: Connection) -> None:
    layout = _layout(35)
    bound = binding(layout, "novita", "emulator", {})
    first = await plan_run(conn, KEYS, layout, bound)
    again = await plan_run(conn, KEYS, layout, bound)
    assert (first.created, again.created, first.chunks) == (True, False, 4)
    assert await conn.client.xlen(KEYS.chunks) == 4  # not planned twice
    other = Layout("e" * 64, 35, layout.chunks)
    with pytest.raises(RunMismatch, match="a manifest with other entries"):
        await plan_run(conn, KEYS, other, binding(other, "novita", "emulator", {}))
    with pytest.raises(RunMismatch, match="provider 'novita'"):
        await plan_run(conn, KEYS, layout, binding(layout, "scenario", "emulator", {}))


def test_lay_out_chunks_every_line_once(tmp_path: Path) -> None:
    manifest = tmp_path / "m.txt"
    manifest.write_text("".join(f"img{i}.png\n" for i in range(25)))
    layout = lay_out(manifest, None, chunk_lines=10)
    assert layout.entries == 25
    assert layout.chunks == ((1, 10, 10), (11, 20, 10), (21, 25, 5))


def test_chunks_fed_from_the_planning_read_match_a_second_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = tmp_path / "m.jsonl"  # a bad line and a duplicate: errors keep their lines
    rows = [f'{{"path": "img{i}.png"}}' for i in range(25)]
    rows[6], rows[12] = "{oops", rows[3]
    manifest.write_text("\n".join(rows) + "\n")
    layout, kept = read_layout(manifest, None, 10, keep=25)
    assert kept is not None and layout == lay_out(manifest, None, 10)
    assert read_layout(manifest, None, 10, keep=24)[1] is None  # one more than it may hold

    def lines(reader: ChunkReader) -> list[list[tuple[int | None, str]]]:
        got = []
        for first, last, skip in ((1, 10, {2}), (11, 20, set()), (5, 12, set()), (21, 25, set())):
            got.append([(e.line, type(e).__name__) for e in reader.entries(first, last, skip)])
        reader.close()
        return got

    read = lines(ChunkReader(manifest, None, duplicates=layout.duplicates))
    monkeypatch.setattr(manifest_package, "read_manifest", None)  # fed: not read again
    assert lines(ChunkReader(manifest, None, kept, duplicates=layout.duplicates)) == read
    assert ("ManifestError" in str(read[0])) and (13, "DuplicateKey") in read[1]


async def test_leases_reclaim_fence_ack_and_poison(conn: Connection) -> None:
    layout = _layout(20)
    await plan_run(conn, KEYS, layout, binding(layout, "novita", "emulator", {}))
    # `a` holds long leases (its fence must not lapse here); `b` and `c` reclaim after 0.3 s idle.
    a = Leases(conn, KEYS, "a", lease_s=30)
    b = Leases(conn, KEYS, "b", lease_s=0.3, poison_after=2)
    c = Leases(conn, KEYS, "c", lease_s=0.3, poison_after=2)
    first, second = await a.take(), await a.take()
    assert first is not None and second is not None
    assert (first.chunk.first, second.chunk.first) == (1, 11)
    assert await b.take() is None  # both held, neither idle yet
    await a.renew()
    assert first.valid(a.lease_s, a.margin_s)
    renewed, first.renewed = first.renewed, first.renewed - (a.lease_s - a.margin_s)
    assert not first.valid(a.lease_s, a.margin_s)  # fenced: last renewal older than lease - margin
    first.renewed = renewed
    # `a` stops renewing (as a dead worker would): `b` reclaims both once they idle.
    taken: list[Lease] = []
    with anyio.fail_after(5):
        while len(taken) < 2:
            lease = await b.take()
            if lease is not None:
                taken.append(lease)
    assert [t.chunk.id for t in taken] == [first.chunk.id, second.chunk.id]
    assert taken[0].deliveries == 2
    await a.renew()  # too late: they are b's now
    assert first.lost and not first.valid(a.lease_s, a.margin_s)
    assert not await a.ack(first)  # XACK alone would not have checked the owner
    assert await b.ack(taken[0])
    assert await b.finished() == 1
    # The other chunk dies again with `b`: a third delivery is over poison_after=2.
    with anyio.fail_after(5):
        while not c.poisoned:
            assert await c.take() is None
    assert c.poisoned[0].chunk.first == 11 and await c.finished() == 2
    assert await conn.client.llen(KEYS.poison) == 1


async def test_a_drained_worker_hands_its_chunk_back_at_once(conn: Connection) -> None:
    layout = _layout(10)
    await plan_run(conn, KEYS, layout, binding(layout, "novita", "emulator", {}))
    a, b = Leases(conn, KEYS, "a", lease_s=30), Leases(conn, KEYS, "b", lease_s=30)
    lease = await a.take()
    assert lease is not None and await b.take() is None
    await a.hand_back(lease)
    again = await b.take()  # no 30 s wait for the lease to lapse
    assert again is not None and again.chunk.id == lease.chunk.id
    assert again.deliveries == 2 and not a.held
    await a.hand_back(lease)  # no longer a's: nothing happens
    assert await b.take() is None


async def test_record_ships_each_line_once(conn: Connection) -> None:
    record = Record(conn, KEYS)
    assert await record.ship("done", [(3, '{"k":"a"}'), (9, '{"k":"b"}')]) == 2
    assert await record.ship("done", [(9, '{"k":"b2"}'), (17, '{"k":"c"}')]) == 1
    assert await record.ship("failed", [(4, '{"kind":"failed","k":"d"}')]) == 1
    assert await record.settled(1, 16) == {3, 4, 9}
    assert await record.settled(17, 17) == {17}
    counts = await record.counts()
    assert (counts.done, counts.failed, counts.rejected) == (3, 1, 0)
    assert [r["k"] for r in await record.records("done")] == ["a", "b", "c"]


async def test_chunk_state_reads_the_range_s_landed_records_however_many_the_hash_holds(
    conn: Connection,
) -> None:
    record = Record(conn, KEYS)
    await record.land([(line, f"up{line}") for line in (2, 5, 6, 40, 41, 42, 43)])
    await record.ship("done", [(5, '{"k":"e"}')])  # its landed entry goes with its done bit
    await record.ship("rejected", [(300, '{"kind":"rejected","k":"z"}')])
    # 7 entries, a range of 8 lines: the whole hash is read; of 3 lines: one look per line.
    assert await record.chunk_state(1, 8) == ({5}, {2: "up2", 6: "up6"})
    assert await record.chunk_state(40, 42) == (set(), {40: "up40", 41: "up41", 42: "up42"})
    assert await record.chunk_state(299, 301) == ({300}, {})  # bytes past a bitmap's end


async def test_gcra_holds_every_second_within_rate_plus_burst(conn: Connection) -> None:
    rate, burst = 100.0, 10
    keys = BudgetKeys(account_digest("novita", "e", {"k": "key"}))
    budget = Budget(conn, keys, rate, burst, jitter_s=0.0)  # the GCRA alone
    granted: list[int] = []  # server microseconds of each grant
    refused: list[int] = []  # and of each refusal

    async def ask() -> None:  # as fast as a client can ask, never waiting as told
        while not granted or granted[-1] - granted[0] < 1_200_000:
            grant = await budget.take()
            (granted if grant.granted else refused).append(grant.server_us)

    # Eight askers: far more asks than the rate, however slow this machine's round trips.
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(ask)
    granted.sort()
    # The burst conforms at once: nothing was refused before the burst-th grant.
    assert len(granted) >= burst and not [t for t in refused if t < granted[burst - 1]]
    j = 0
    for i, start in enumerate(granted):  # every 1-second window that starts at a grant
        while j < len(granted) and granted[j] < start + 1_000_000:
            j += 1
        assert j - i <= rate + burst
    span = (granted[-1] - granted[0]) / 1e6
    # Within -10 % / +2 % of the budget (below it only if this client asked too slowly).
    assert 0.9 * rate <= (len(granted) - burst) / span <= 1.02 * rate


async def test_the_burst_leaves_room_for_the_delays_between_grant_and_arrival(
    conn: Connection,
) -> None:
    # 4 workers at 200/s, burst 8: the signer saw 1-second windows of 214 calls (bound 208),
    # as grants reach the provider a varying few ms later. 30 ms of it is kept from the burst.
    # Scaled to 1 call/s and 3 s of delay variation, so no machine asks too slowly to tell.
    rate, burst = 1.0, 10
    keys = BudgetKeys(account_digest("novita", "e", {"k": "jitter"}))
    budget = Budget(conn, keys, rate, burst, jitter_s=3.0)
    at_once = 0
    while (await budget.take()).granted:
        at_once += 1
    assert at_once == burst - 3


async def test_a_pause_stops_every_caller_and_is_never_shortened(conn: Connection) -> None:
    keys = BudgetKeys(account_digest("novita", "e", {"k": "other"}))
    one, two = Budget(conn, keys, None), Budget(conn, keys, 50.0)
    end = await one.pause(2.0)
    assert await one.pause(0.5) == end  # a shorter Retry-After keeps the longer pause
    for budget in (one, two):  # a pause-only budget and a rated one: both wait
        grant = await budget.take()
        assert not grant.granted
        assert grant.server_us + grant.wait_s * 1e6 == pytest.approx(end, abs=2)
    assert "other" not in str(await conn.client.keys("*"))  # only the digest names it


async def test_workers_racing_to_plan_share_one_made_up_run_value(conn: Connection) -> None:
    # Autoenhance makes an order id up when none is named: every worker must use one.
    layout = _layout(10)
    made = iter(["order-a", "order-b", "order-c", "order-d"])

    def run_params(previous: Mapping[str, str]) -> dict[str, str]:
        return {"order_id": previous.get("order_id") or next(made)}

    binds: list[dict[str, str]] = []

    async def join() -> None:
        binds.append((await join_run(conn, KEYS, layout, "autoenhance", "e", run_params))[1])

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(join)
    assert len({b["order_id"] for b in binds}) == 1 and len(binds) == 3


async def test_every_joiner_gets_the_planner_s_duplicates(conn: Connection, tmp_path: Path) -> None:
    manifest = tmp_path / "m.txt"  # lines 4 and 6 repeat line 1, line 5 repeats line 2
    manifest.write_text("a.png\nb.png\nc.png\na.png\nb.png\na.png\n")
    layout = lay_out(manifest, None, chunk_lines=2)
    assert layout.duplicates.text() == "4 1 5 2 6 1"
    bound = binding(layout, "novita", "emulator", {})
    planned = await plan_run(conn, KEYS, layout, bound)
    # A joiner that took the plan's digest by the fingerprint read no duplicates itself.
    joiner = Layout(layout.digest, layout.entries, (), layout.fingerprint)
    joined = await plan_run(conn, KEYS, joiner, bound)
    assert (planned.created, joined.created) == (True, False)
    assert planned.duplicates == joined.duplicates == layout.duplicates
    reader = ChunkReader(manifest, None, duplicates=joined.duplicates)
    fed = [type(e).__name__ for f, last, _n in layout.chunks for e in reader.entries(f, last)]
    assert fed == ["Item"] * 3 + ["DuplicateKey"] * 3
