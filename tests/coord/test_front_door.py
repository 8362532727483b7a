"""`ingest.upload(..., coordinator=URL)`: the library's front door as one worker of a shared run.

Two library calls on one manifest, against the in-process emulator and a real
redis-server, share the run: together they upload every key once, each
`Result` holds the run's counts (not its own), and a third call finds
nothing left to do. What a worker cannot take is refused by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import ingest
from ingest.coord import plan, worker
from ingest.coord.worker import Coordinator
from ingest.errors import ConfigError
from ingest.sim import SimSettings
from ingest.sim.server import serve
from tests.images import make_dataset, write_jsonl_manifest

ITEMS, CHUNK = 24, 4
KEY = "k-front-door"


@pytest.mark.anyio
async def test_two_library_calls_share_one_run(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest.coord.front import CoordinatedUpload

    monkeypatch.setenv("NOVITA_API_KEY", KEY)
    laid: list[Path] = []  # manifests read whole to plan or join (not by a fingerprint's joiner)

    def read_layout(manifest: Path, *args: Any) -> tuple[plan.Layout, Any]:
        laid.append(manifest)
        return plan.read_layout(manifest, *args)

    monkeypatch.setattr(worker, "read_layout", read_layout)
    paths = make_dataset(tmp_path / "img", ITEMS, max_size=2048)
    manifest = write_jsonl_manifest(paths, tmp_path / "m.jsonl")
    async with serve(SimSettings(api_keys=frozenset({KEY}))) as sim:
        where: dict[str, Any] = {
            "base_url": sim.base_url, "coordinator": redis_url, "run_name": "lib-run"
        }  # fmt: skip
        results: list[ingest.Result] = []

        async def work() -> None:
            run = ingest.open_upload(manifest, provider="novita", put_concurrency=2, **where)
            assert isinstance(run, CoordinatedUpload)
            # Small chunks, so both calls take some (the front door plans with the default).
            run.worker.coordinator = Coordinator(redis_url, "lib-run", chunk_lines=CHUNK)
            async with run:
                results.append(await run.wait())

        async with anyio.create_task_group() as tg:
            tg.start_soon(work)
            tg.start_soon(work)
        assert [(r.done, r.total, r.run_name, r.complete) for r in results] == [
            (ITEMS, ITEMS, "lib-run", True)
        ] * 2
        assert sum(r.this_run.done for r in results) == ITEMS  # no key uploaded twice
        assert len(sim.state.objects) == ITEMS
        read = len(laid)  # 1 or 2: both may have looked before either planned
        late = await ingest.upload(manifest, provider="novita", **where)
        assert late.complete and late.this_run.api_calls == 0
        assert len(sim.state.objects) == ITEMS
        assert len(laid) == read  # the planner's file: the plan's layout, not a second read
        copy = tmp_path / "copy" / "m.jsonl"  # the same entries elsewhere: read, then joined
        copy.parent.mkdir()
        copy.write_bytes(manifest.read_bytes())
        again = await ingest.upload(copy, provider="novita", **where)
        assert again.complete and again.this_run.api_calls == 0 and laid[-1] == copy


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"journal": "x.journal"}, "journal"),
        ({"sim": True}, "sim"),
        ({"force": True}, "force"),
        ({"run_name": "a b"}, "run_name"),
        ({"coordinator": "http://127.0.0.1:6379/0"}, "coordinator"),
    ],
)
def test_what_a_worker_cannot_take_is_refused(
    tmp_path: Path, extra: dict[str, object], key: str
) -> None:
    manifest = write_jsonl_manifest(make_dataset(tmp_path / "img", 1), tmp_path / "m.jsonl")
    given: dict[str, object] = {"coordinator": "redis://127.0.0.1:6379/0", **extra}
    with pytest.raises(ConfigError) as caught:
        ingest.open_upload(manifest, provider="novita", **given)  # type: ignore[arg-type]
    assert caught.value.key == key


def test_a_run_name_needs_a_coordinator(tmp_path: Path) -> None:
    manifest = write_jsonl_manifest(make_dataset(tmp_path / "img", 1), tmp_path / "m.jsonl")
    with pytest.raises(ConfigError, match="give coordinator= too"):
        ingest.open_upload(manifest, provider="novita", run_name="r")


@pytest.mark.anyio
async def test_a_drained_worker_takes_no_chunk_and_is_not_complete(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOVITA_API_KEY", KEY)
    manifest = write_jsonl_manifest(make_dataset(tmp_path / "img", 3), tmp_path / "m.jsonl")
    async with serve(SimSettings(api_keys=frozenset({KEY}))) as sim:
        run = ingest.open_upload(
            manifest, provider="novita", base_url=sim.base_url, coordinator=redis_url
        )
        async with run:
            run.drain()  # before its first chunk
            with pytest.raises(RuntimeError, match="not taken a chunk"):
                run.snapshot()
            result = await run.wait()
        assert (result.drained, result.complete, result.done, result.total) == (True, False, 0, 3)
        assert result.in_flight == 3 and result.run_name == "novita-m"
        assert len(sim.state.objects) == 0
