"""Items the provider forgot before their finalize are uploaded anew at the workers' concurrency.

Found at a stop: ModelHunter's 404 FILE_NOT_FOUND on complete (the file
forgotten past its URL's lifetime) was uploaded anew inside the finalizer
that got it, so no more than api_concurrency/2 at once, and that finalizer
completed nothing meanwhile. Now each is a task through `Calls.upload` (the
pacer, a PUT slot, the retry rules), as many at once as the workers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.clock import FakeClock
from ingest.config import RunSettings
from ingest.errors import Action
from ingest.item import Source
from ingest.providers.base import Target
from tests.fakeprovider import FakeProvider, refusal, run_engine, write_manifest
from tests.images import make_image

pytestmark = pytest.mark.anyio

KEYS = [f"k{i}" for i in range(4)]


class SlowPuts(FakeProvider):
    """Each PUT takes a second of virtual time; counts the second uploads at once."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock, finalize=True)
        self.clock = clock
        self.anew_putting = 0
        self.most_anew = 0  # PUTs at once among the second uploads

    async def transfer(self, source: Source, target: Target) -> Target:
        if self.signed[source.item.key] == 1:  # a first upload
            await self.clock.sleep(1.0)
            return await super().transfer(source, target)
        self.anew_putting += 1
        self.most_anew = max(self.most_anew, self.anew_putting)
        try:
            await self.clock.sleep(1.0)
            return await super().transfer(source, target)
        finally:
            self.anew_putting -= 1


async def test_forgotten_items_are_uploaded_anew_at_full_put_concurrency(tmp_path: Path) -> None:
    for index, key in enumerate(KEYS):
        make_image(tmp_path / f"{key}.png", "png", 500, seed=index)
    manifest = write_manifest(tmp_path / "m.jsonl", [{"path": f"{k}.png", "id": k} for k in KEYS])
    clock = FakeClock()
    provider = SlowPuts(clock)
    for key in KEYS:  # every first complete: "File not found or upload URL has expired"
        provider.fail("finalize", key, refusal(Action.RESIGN, "FILE_NOT_FOUND", op="finalize"))
    started = clock.now()
    # api_concurrency 2: one finalizer, which uploaded the 4 again one after another.
    run = RunSettings(put_concurrency=4, api_concurrency=2, lookahead=1)
    ran = await run_engine(tmp_path, provider, manifest, clock, run=run)
    assert sorted(ran.events.done) == KEYS and ran.outcome.counters.in_flight == 0
    assert all(len(provider.calls("transfer", k)) == 2 for k in KEYS)
    assert provider.most_anew == 4  # was 1
    assert clock.now() - started <= 3.0  # 1 s a round of 4 at once; was 1 + 4 s
