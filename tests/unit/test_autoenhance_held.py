"""Autoenhance's 30 creates of one file name an hour: items over it are held back, then and on a re-run.

A folder of 33 ``*/img.png`` cannot be renamed by its user, so an item over
the rule is held back (journaled as a local refusal, re-checked by every
run) with the time it can go, never sent to fail as ``same_name_limit``. A
re-run within the hour learns the order's creates from ``GET /v3/orders/{id}``
(`AutoenhanceProvider.tidy`) and holds the same items back again without a
call. Everything in process: the emulator on loopback, the real adapter, the
engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from ingest.config import DEFAULT_PROVIDERS, RunSettings
from ingest.engine import Engine, EngineSettings, Outcome
from ingest.http import Timeouts, api_session, storage_session
from ingest.item import Item
from ingest.journal import Header, Journal, replay
from ingest.manifest import read_manifest
from ingest.namelimit import NameLimit, clock_time
from ingest.providers.autoenhance import AutoenhanceProvider
from ingest.providers.context import Context
from ingest.sim import SimServer, SimSettings, serve
from tests.fakeprovider import write_manifest
from tests.images import make_image

pytestmark = pytest.mark.anyio

KEY = "ae-held-0123456789abc"
TIMEOUTS = Timeouts(connect=5, read=10)


@contextlib.asynccontextmanager
async def adapter(
    server: SimServer, params: Mapping[str, str]
) -> AsyncIterator[AutoenhanceProvider]:
    """A new adapter (a new process's: nothing counted yet) on the emulator, bound to `params`."""
    psettings = dataclasses.replace(DEFAULT_PROVIDERS["autoenhance"], base_url=server.base_url)
    headers = AutoenhanceProvider.auth_headers({"api_key_env": KEY})
    async with (
        api_session(server.base_url + "/", headers, TIMEOUTS, 4) as api,
        storage_session(TIMEOUTS, 4) as storage,
    ):
        ctx = Context(api=api, storage=storage, settings=psettings, params=params)
        yield AutoenhanceProvider(ctx)


async def run(provider: AutoenhanceProvider, manifest: Path, journal_path: Path) -> Outcome:
    journal, state = Journal.open(
        journal_path, Header(provider="autoenhance", manifest=str(manifest))
    )
    with journal:
        engine = Engine(
            provider,
            journal,
            state,
            EngineSettings(RunSettings(put_concurrency=4, api_concurrency=4)),
            rng=random.Random(5),
        )
        return await engine.run(read_manifest(manifest))


def same_names(folder: Path, n: int) -> Path:
    """A manifest of `n` images all named img.png, each in its own folder."""
    entries = []
    for i in range(n):
        (folder / f"f{i:02d}").mkdir()
        make_image(folder / f"f{i:02d}" / "img.png", "png", 200, seed=i)
        entries.append({"path": f"f{i:02d}/img.png"})
    return write_manifest(folder / "m.jsonl", entries)


def held_reasons(journal_path: Path) -> list[str]:
    lines = [json.loads(line) for line in journal_path.read_text().splitlines()[1:]]
    return [str(rec["e"]) for rec in lines if rec["s"] == "bad"]


async def test_a_rerun_within_the_hour_holds_the_same_items_back_without_a_call(
    tmp_path: Path,
) -> None:
    manifest = same_names(tmp_path, 33)
    journal = tmp_path / "journal"
    async with serve(SimSettings(api_keys=frozenset({KEY}))) as server:
        psettings = dataclasses.replace(DEFAULT_PROVIDERS["autoenhance"], base_url=server.base_url)
        params = AutoenhanceProvider.run_params(psettings, {})
        async with adapter(server, params) as first:
            outcome = await run(first, manifest, journal)
        assert (outcome.counters.done, outcome.counters.rejected) == (30, 3)
        reasons = held_reasons(journal)
        assert len(reasons) == 3 and all("held back: file name 'img.png'" in r for r in reasons)
        assert "it can go after" in reasons[0] and "run the same command again then" in reasons[0]
        creates = server.state.stats().api_requests["POST /v3/images/"]

        async with adapter(server, params) as second:  # the same command again, at once
            outcome = await run(second, manifest, journal)
        assert (outcome.counters.skipped, outcome.counters.failed) == (30, 0)
        assert outcome.counters.rejected == 3  # held again: no 429, no failure
        assert server.state.stats().api_requests["POST /v3/images/"] == creates
        assert "counting earlier runs' creates this hour" in held_reasons(journal)[-1]
    assert replay(journal).counts()["failed"] == 0


def test_the_time_a_held_item_can_go_is_when_the_oldest_creates_age_out() -> None:
    now = time.time()
    earlier = [now - 3000 + n for n in range(29)]  # 29 creates, the first 50 minutes ago
    names = NameLimit(30, "autoenhance", earlier=lambda name: earlier, now=lambda: now)

    def item(n: int) -> Item:
        return Item(key=f"k{n}", path=Path(f"/d/{n}/img.png"), line=n)

    assert names.check(item(1)) is None  # the 30th create of the hour
    second = names.check(item(2))
    third = names.check(item(3))
    assert second is not None and third is not None
    assert f"it can go after {clock_time(now - 3000 + 3600)}" in second.reason
    assert "counting earlier runs' creates this hour" in second.reason
    assert f"it can go after {clock_time(now - 3000 + 1 + 3600)}" in third.reason
    validate_only = NameLimit(1, "autoenhance")  # `ingest validate`: no run, no time
    assert validate_only.check(item(1)) is None
    refused = validate_only.check(item(2))
    assert refused is not None and "until an hour after the first 1 are uploaded" in refused.reason
