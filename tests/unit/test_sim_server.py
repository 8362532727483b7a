"""Running the emulator: control routes, runtime fault switch, stalls and shutdown."""

from __future__ import annotations

import time

import aiohttp
import anyio
import pytest
import yarl

from ingest.sim import FaultPlan, SimSettings, serve

pytestmark = pytest.mark.anyio

ROUTE = "/v3/assets/training_dataset"
AUTH = {"Authorization": "Bearer k"}


async def test_health_and_empty_records() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        assert yarl.URL(sim.base_url).port not in (None, 0)
        async with http.get(f"{sim.base_url}/_sim/health") as resp:
            assert resp.status == 200
            body = await resp.json()
            assert body == {"ok": True, "providers": list(sim.providers), "faults": "seed=0"}
            assert {"novita", "modelhunter", "autoenhance"} <= set(body["providers"])
        async with http.get(f"{sim.base_url}/_sim/objects") as resp:
            assert await resp.json() == {"objects": []}


async def test_stats_json_shape() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        async with http.post(
            f"{sim.base_url}{ROUTE}", json={"file_extension": "png"}, headers=AUTH
        ) as resp:
            url = (await resp.json())["upload_url"]
        async with http.put(yarl.URL(url, encoded=True), data=b"abc") as resp:
            assert resp.status == 200
        async with http.get(f"{sim.base_url}/_sim/stats") as resp:
            stats = await resp.json()
        assert stats["api_requests"] == {f"POST {ROUTE}": {"200": 1}}
        assert stats["storage_puts"] == {"200": 1}
        assert stats["assets_issued"] == 1
        assert stats["objects"] == 1
        assert stats["storage_headers"]["content-length"] == 1
        assert stats["storage_with_authorization"] == 0
        assert stats == sim.state.stats().to_json()
        async with http.get(f"{sim.base_url}/_sim/assets") as resp:
            (asset,) = (await resp.json())["assets"]
        assert asset["provider"] == "novita"
        assert asset["expires"] - asset["created"] <= 120


async def test_faults_switch_at_runtime() -> None:
    async with serve(SimSettings(faults=FaultPlan(seed=3))) as sim, aiohttp.ClientSession() as http:
        async with http.get(f"{sim.base_url}/_sim/faults") as resp:
            assert await resp.json() == {"faults": "seed=3"}
        async with http.put(f"{sim.base_url}/_sim/faults", data=b"seed=9,api.503=1") as resp:
            assert resp.status == 200
            assert await resp.json() == {"faults": "seed=9,api.503=1"}
        assert sim.faults == FaultPlan(seed=9, api_503=1.0)
        async with http.post(
            f"{sim.base_url}{ROUTE}", json={"file_extension": "png"}, headers=AUTH
        ) as resp:
            assert resp.status == 503
        async with http.put(f"{sim.base_url}/_sim/faults", data=b"api.503=2") as resp:
            assert resp.status == 400
            assert "api.503" in (await resp.json())["error"]
        assert sim.faults.api_503 == 1.0  # a bad plan changes nothing
        sim.set_faults(FaultPlan())
        async with http.post(
            f"{sim.base_url}{ROUTE}", json={"file_extension": "png"}, headers=AUTH
        ) as resp:
            assert resp.status == 200


async def test_client_giving_up_on_a_stall_does_not_block_shutdown() -> None:
    async with serve(SimSettings(faults=FaultPlan.parse("api.stall=1"))) as sim:
        async with aiohttp.ClientSession() as http:
            with anyio.move_on_after(0.1):
                await http.post(f"{sim.base_url}{ROUTE}", json={"file_extension": "png"})
            with anyio.fail_after(10):
                await sim.state.wait_until(lambda s: s.events["api_stalls"] == 1)
        started = time.monotonic()
    assert time.monotonic() - started < 5


async def test_stalled_requests_are_dropped_at_shutdown() -> None:
    failures: list[BaseException] = []

    async def call(method: str, url: str | yarl.URL) -> None:
        try:
            async with aiohttp.ClientSession() as http, http.request(method, url):
                pass
        except aiohttp.ClientError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tg:
        async with serve() as sim:
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{sim.base_url}{ROUTE}", json={"file_extension": "png"}, headers=AUTH
                ) as resp,
            ):
                url = yarl.URL((await resp.json())["upload_url"], encoded=True)
            sim.set_faults("api.stall=1,put.stall=1")
            tg.start_soon(call, "POST", f"{sim.base_url}{ROUTE}")
            tg.start_soon(call, "PUT", url)
            with anyio.fail_after(10):
                await sim.state.wait_until(
                    lambda s: s.events["api_stalls"] == 1 and s.events["storage_stalls"] == 1
                )
            started = time.monotonic()
        stopped = time.monotonic() - started
    assert stopped < 5
    assert len(failures) == 2
    assert sim.state.objects == {}
