"""`ingest run --coordinator`: real worker processes, `ingest sim` and a real redis-server.

Three workers share one manifest (small chunks) and one budget just under the
emulator's token bucket; one is SIGKILLed after it showed progress. Every key
lands, duplicates stay within the killed worker's in-flight bound, the budget
held (the emulator refused nothing for pace), and a worker started afterwards
makes no API call. The shared Retry-After pause is tested on two pacers of one
budget, in process.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from ingest.clock import SYSTEM
from ingest.coord.budget import Budget, SharedPacer
from ingest.coord.connection import connect
from ingest.coord.names import BudgetKeys
from ingest.coord.record import FLUSH_S
from ingest.coord.worker import WorkerResult, run_worker
from ingest.pacing import Pacer
from tests.coord.redisproc import RedisServer
from tests.images import make_dataset, write_jsonl_manifest
from tests.simproc import ingest_env, read_journal, sha256_file, sim_process
from tests.torture import popen_ingest

ITEMS, CHUNK, PUT, LOOKAHEAD, LEASE = 150, 15, 4, 2, 1.0
SIM_RATE, BUDGET = 100, 90  # the emulator's token bucket, and the shared budget under it


def _flushed(server: RedisServer, db: int) -> str:
    url = f"redis://127.0.0.1:{server.port}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


def test_three_workers_one_killed_every_key_lands_once(
    tmp_path: Path, redis_proc: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The victim is a real process (to be SIGKILLed); the other workers run in this
    # process, each with its own connections (a process start-up is seconds of CPU here).
    paths = make_dataset(tmp_path / "img", ITEMS, max_size=4096)
    manifest = write_jsonl_manifest(paths, tmp_path / "m.jsonl")
    url = _flushed(redis_proc, 15)
    monkeypatch.setenv("NOVITA_API_KEY", "k-coord")
    with sim_process("--faults", f"api.rate={SIM_RATE}") as sim:
        flags = {"base_url": sim.base_url, "api_rate": BUDGET, "put_concurrency": PUT,
                 "lookahead": LOOKAHEAD}  # fmt: skip
        args = [
            "run", str(manifest), "--provider", "novita", "--coordinator", url,
            "--chunk-lines", str(CHUNK), "--lease", str(LEASE), "--json",
            *(f"--{k.replace('_', '-')}={v}" for k, v in flags.items()),
        ]  # fmt: skip
        victim = popen_ingest(
            args, env=ingest_env(NOVITA_API_KEY="k-coord"), stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            results = anyio.run(_alongside, victim, manifest, url, flags)
        finally:
            victim.kill()
            victim.communicate(timeout=30)
        assert all(r.complete and r.counts.done == ITEMS for r in results), results
        stats = sim.stats()
        assert stats["api_rate_limited"] == 0 and stats["api_429"] == 0  # the budget held
        landed = Counter(obj["sha256"] for obj in sim.objects())
        assert all(landed[sha256_file(p)] >= 1 for p in paths)  # every key landed
        # Duplicates: what the victim had in flight, or done and not yet shipped (one
        # flush interval at the budget's rate).
        duplicates = sum(landed.values()) - len(paths)
        assert duplicates <= PUT + LOOKAHEAD + math.ceil(BUDGET * FLUSH_S), duplicates
        calls = _calls(sim.stats())
        late = anyio.run(_work, manifest, url, flags)  # after the end: nothing left to do
        assert late.complete and late.this_worker.api_calls == 0 and late.chunks == 0
        assert _calls(sim.stats()) == calls
        # status and export through the coordinator agree with the emulator.
        where = ["--coordinator", url, "--run-name", "novita-m"]
        status = read_journal(["status", *where, "--json"])
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        assert (info["done"], info["left"], info["finished"]) == (ITEMS, 0, info["chunks"])
        exported = read_journal(["export", *where])
        rows = [json.loads(line) for line in exported.stdout.splitlines()]
        assert [r["key"] for r in rows] == [f"item-{i:06d}" for i in range(ITEMS)]
        remote = {str(obj["remote_id"]) for obj in sim.objects()}
        assert all(str(r["remote_id"]) in remote for r in rows)


def _calls(stats: dict[str, Any]) -> int:
    return sum(stats["api_requests"]["POST /v3/assets/training_dataset"].values())


async def _work(manifest: Path, url: str, flags: dict[str, Any]) -> WorkerResult:
    return await run_worker(
        manifest, provider="novita", coordinator=url, lease_s=LEASE, chunk_lines=CHUNK, **flags
    )


async def _alongside(
    victim: subprocess.Popen[str], manifest: Path, url: str, flags: dict[str, Any]
) -> list[WorkerResult]:
    """Two workers here, started once the victim has planned; the victim killed mid-chunk."""
    assert victim.stdout is not None
    lines = iter(victim.stdout)
    started = await anyio.to_thread.run_sync(lambda: next(ln for ln in lines if '"start"' in ln))
    assert '"planned":true' in started
    results: list[WorkerResult] = []

    async def work() -> None:
        results.append(await _work(manifest, url, flags))

    async with anyio.create_task_group() as tg:
        tg.start_soon(work)
        tg.start_soon(work)
        seen = 0
        while seen < 5:  # it has shown progress: it holds a chunk with items in flight
            line = await anyio.to_thread.run_sync(next, lines)
            seen += '"event":"item_done"' in line
        victim.kill()
    return results


def test_a_worker_with_another_manifest_is_refused(
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ingest.cli.main import main
    from ingest.coord.names import RunKeys
    from ingest.coord.plan import binding, lay_out, plan_run

    paths = make_dataset(tmp_path / "img", 3, max_size=2048)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ours = write_jsonl_manifest(paths, tmp_path / "a" / "m.jsonl")
    theirs = write_jsonl_manifest(paths[:2], tmp_path / "b" / "m.jsonl")  # same stem, same name

    async def plan_theirs() -> None:
        layout = lay_out(theirs, None)
        async with connect(redis_url) as conn:
            await plan_run(conn, RunKeys("novita-m"), layout,
                           binding(layout, "novita", "http://127.0.0.1:9", {}))  # fmt: skip

    anyio.run(plan_theirs)
    monkeypatch.setenv("NOVITA_API_KEY", "k-secret-1")
    code = main(["run", str(ours), "--provider", "novita", "--base-url", "http://127.0.0.1:9",
                 "--coordinator", redis_url, "--plain"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "run 'novita-m' is bound to a manifest with other entries" in err
    assert "Traceback" not in err and "k-secret-1" not in err


@pytest.mark.anyio
async def test_a_429_at_one_worker_pauses_every_worker(redis_url: str) -> None:
    async with connect(redis_url) as conn:
        budget = Budget(conn, BudgetKeys("acct"), rate=1000.0, burst=5)
        one, two = (
            SharedPacer(budget, Pacer(None, clock=SYSTEM), SYSTEM, max_pause_s=60) for _ in "12"
        )
        await two.wait()  # not paused yet
        one.on_throttle(0.4)  # a 429 with Retry-After: 0.4 at the first worker
        await one.push()  # what its pacer's own task does at once
        pause_end = int(str(await conn.client.get(BudgetKeys("acct").pause)))
        await two.wait()  # the second worker never saw the 429
        seconds, micros = await conn.client.time()
        assert seconds * 1_000_000 + micros >= pause_end
        assert two.shared_waits >= 1
