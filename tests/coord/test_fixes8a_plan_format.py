"""A run planned by another version of ingest is refused as such (fixes8a).

The plan's manifest digest changed formula in session 7 (a sum of per-entry digests), so a
worker joining a run an older version planned was told "a manifest with other entries"
though its manifest was the same file. The plan now records its format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from ingest.coord.connection import Connection, connect
from ingest.coord.names import RunKeys
from ingest.coord.plan import PLAN_FORMAT, Layout, RunMismatch, binding, plan_run

pytestmark = pytest.mark.anyio


@pytest.fixture
async def conn(redis_url: str) -> AsyncIterator[Connection]:
    async with connect(redis_url) as c:
        yield c


LAYOUT = Layout("d" * 64, 20, ((1, 10, 10), (11, 20, 10)))


async def _stored(conn: Connection, keys: RunKeys, plan: dict[str, object]) -> None:
    await conn.client.set(keys.plan, orjson.dumps(plan).decode())


async def test_a_plan_of_an_older_format_is_refused_naming_the_version(
    conn: Connection,
) -> None:
    keys = RunKeys("older")
    bound = binding(LAYOUT, "novita", "emulator", {})
    assert bound["format"] == PLAN_FORMAT
    old = {k: v for k, v in bound.items() if k != "format"} | {"manifest": "0" * 64}
    await _stored(conn, keys, old)  # as a version before the digest's new formula planned it
    with pytest.raises(RunMismatch) as refused:
        await plan_run(conn, keys, LAYOUT, bound)
    said = str(refused.value)
    assert "was planned by another version of ingest" in said
    assert "use a new --run-name" in said
    assert "other entries" not in said


async def test_a_plan_of_this_format_before_it_was_recorded_is_joined(conn: Connection) -> None:
    keys = RunKeys("unrecorded")
    bound = binding(LAYOUT, "novita", "emulator", {})
    await _stored(conn, keys, {k: v for k, v in bound.items() if k != "format"})
    planned = await plan_run(conn, keys, LAYOUT, bound)  # same digest: the same formula
    assert (planned.created, planned.chunks) == (False, 2)
