"""`ingest retry-failed --coordinator URL --run-name NAME`: a shared run's failed items again.

In process against a real redis-server: the record's failed lines become new
chunks (cut at an unsettled line between them), their bits and records are
cleared, the rejected kept; a run still in progress is left as it is. End to end
(the emulator on a thread of its own, the commands in this one): a run whose
every PUT failed is retried by the command, which works as a worker; status
and export then agree with the emulator.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import anyio
import anyio.from_thread
import orjson
import pytest

from ingest.coord.connection import Connection, connect
from ingest.coord.lease import Leases
from ingest.coord.names import RunKeys
from ingest.coord.plan import Chunk, Layout, binding, plan_run, read_plan
from ingest.coord.record import Record
from ingest.coord.retry import Retried, make_pending
from ingest.sim import SimSettings
from ingest.sim.faults import FaultPlan
from ingest.sim.server import SimServer, serve
from tests.images import make_dataset, write_jsonl_manifest

KEYS = RunKeys("r")


@pytest.fixture
async def conn(redis_url: str) -> AsyncIterator[Connection]:
    async with connect(redis_url) as c:
        yield c


def _rec(kind: str, line: int) -> tuple[int, str]:
    return line, orjson.dumps({"kind": kind, "k": f"k{line}", "line": line}).decode()


@pytest.mark.anyio
async def test_failed_lines_become_new_chunks_and_the_rejected_stay(conn: Connection) -> None:
    layout = Layout("d" * 64, 40, tuple((f, f + 9, 10) for f in range(1, 41, 10)))
    await plan_run(conn, KEYS, layout, binding(layout, "novita", "emulator", {}))
    record = Record(conn, KEYS)
    failed, rejected, unsettled = [3, 4, 7, 25, 31], [5], [30]  # 30: a poisoned chunk's
    done = [n for n in range(1, 41) if n not in failed + rejected + unsettled]
    await record.ship("done", [(n, orjson.dumps({"k": f"k{n}", "line": n}).decode()) for n in done])
    await record.ship("failed", [_rec("failed", n) for n in failed])
    await record.ship("rejected", [_rec("rejected", n) for n in rejected])
    leases = Leases(conn, KEYS, "w")
    assert await make_pending(conn, KEYS, 10) == Retried(0, 0, 4, in_progress=True)
    assert len([chunk async for chunk in _take_all(leases)]) == 4
    assert await make_pending(conn, KEYS, 10) == Retried(5, 3, 7)
    counts = await record.counts()
    assert (counts.done, counts.failed, counts.rejected) == (len(done), 0, 1)
    assert await record.records("failed") == []
    assert [r["line"] for r in await record.records("rejected")] == [5]
    plan = await read_plan(conn, KEYS)
    assert plan is not None and plan["chunks"] == 7
    taken = [chunk async for chunk in _take_all(Leases(conn, KEYS, "later"))]
    # 5 and 6 are settled (rejected, done): one chunk; 30 is not: 25 and 31 apart.
    assert [(c.first, c.last, c.count) for c in taken] == [(3, 7, 3), (25, 25, 1), (31, 31, 1)]
    assert (await make_pending(conn, KEYS, 10)).items == 0  # nothing failed any more


async def _take_all(leases: Leases) -> AsyncIterator[Chunk]:
    """Every chunk left, each acknowledged as it is taken."""
    while (lease := await leases.take()) is not None:
        await leases.ack(lease)
        yield lease.chunk


@pytest.fixture
def threaded_sim() -> Iterator[SimServer]:
    """The in-process emulator on a thread's event loop, so commands run here can call it."""
    settings = SimSettings(api_keys=frozenset({"k-retry"}), faults=FaultPlan.parse("put.500=1"))
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve(settings)) as sim,
    ):
        yield sim


def _main(*args: str) -> tuple[int, str, str]:
    from ingest.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_retry_failed_through_the_coordinator(
    tmp_path: Path, redis_url: str, threaded_sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = threaded_sim
    monkeypatch.setenv("NOVITA_API_KEY", "k-retry")
    manifest = write_jsonl_manifest(make_dataset(tmp_path / "img", 5), tmp_path / "m.jsonl")
    with manifest.open("a") as fh:
        fh.write('{"id": "gone", "path": "img/missing.png"}\n')  # rejected: stays rejected
    where = ["--coordinator", redis_url, "--run-name", "again"]
    fast = ["--max-attempts", "1", "--retry-window-s", "0", "--chunk-lines", "2", "--plain"]
    code, _, err = _main("run", str(manifest), "--provider", "novita", "--base-url",
                         sim.base_url, *where, *fast)  # fmt: skip
    assert code == 1, err  # every PUT refused: failed
    assert "0 of 6 done, 5 failed, 1 rejected" in err
    sim.set_faults(FaultPlan())
    code, _, err = _main("retry-failed", *where, "--plain")  # the provider, URL and path: the run's
    assert code == 1, err  # every item done but the rejected one
    assert "5 failed items of run 'again' pending again (1 chunk)" in err
    assert "5 of 6 done, 0 failed, 1 rejected" in err
    assert len(sim.state.objects) == 5
    code, out, _ = _main("status", *where, "--json")
    info = json.loads(out)
    assert (info["done"], info["failed"], info["rejected"], info["left"]) == (5, 0, 1, 0)
    assert (info["chunks"], info["finished"]) == (4, 4)  # 3 planned, 1 retried
    code, out, _ = _main("status", *where, "--failed", "--json")
    assert [json.loads(line)["class"] for line in out.splitlines()] == ["bad"]
    code, out, _ = _main("export", *where)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["key"] for r in rows] == [f"item-{i:06d}" for i in range(5)]
    remote = {obj.remote_id for obj in sim.state.objects.values()}
    assert {str(r["remote_id"]) for r in rows} == remote
