"""Novita where no source says how it behaves: the adapter against each way the emulator plays it.

The gaps (../shared/fidelity.md): the error JSON (third parties report
``{"code", "reason", "message", "metadata"}``), the rate limits of the upload
call (none documented, nor any Retry-After), and the largest image (none
documented). A bad key must stop the run, a throttle must be retried and an
image Novita refuses must fail alone, whatever the body looks like.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.errors import Action, TransferError
from ingest.providers.novita import NovitaProvider
from ingest.sim import FaultPlan
from ingest.sim.settings import NovitaErrorBody, NovitaSimSettings
from tests.contract.harness import HARNESSES, adapter, emulator, make_source
from tests.fakeapi import Canned, FakeApi, context, source

pytestmark = pytest.mark.anyio

BODIES: list[NovitaErrorBody] = ["v3", "text", "empty"]


@pytest.mark.parametrize("body", BODIES)
async def test_a_wrong_key_stops_the_run_whatever_the_error_body(
    tmp_path: Path, body: NovitaErrorBody
) -> None:
    harness = HARNESSES["novita"]
    sim_settings = {"api_keys": frozenset({"the-real-key"}), "novita": NovitaSimSettings(body)}
    async with emulator(harness, **sim_settings) as sim, adapter(harness, sim) as provider:
        with pytest.raises(TransferError) as info:
            await provider.acquire(make_source(tmp_path, 1))
    err = info.value
    assert (err.action, err.status) == (Action.STOP, 403)
    assert err.code == ("INVALID_API_KEY" if body == "v3" else "http_403")


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize(("plan", "retry_after"), [("api.retry_after=3", 3), ("", None)])
async def test_a_429_is_retried_with_or_without_retry_after(
    tmp_path: Path, body: NovitaErrorBody, plan: str, retry_after: float | None
) -> None:
    harness = HARNESSES["novita"]
    faults = FaultPlan.parse(f"api.429=1,{plan or 'api.retry_after=none'}")
    async with (
        emulator(harness, faults=faults, novita=NovitaSimSettings(body)) as sim,
        adapter(harness, sim) as provider,
    ):
        with pytest.raises(TransferError) as info:
            await provider.acquire(make_source(tmp_path, 2))
        sim.set_faults(FaultPlan.parse("api.503=1"))
        with pytest.raises(TransferError) as unavailable:
            await provider.acquire(make_source(tmp_path, 3))
    assert (info.value.action, info.value.status, info.value.retry_after) == (
        Action.RETRY,
        429,
        retry_after,
    )
    assert (unavailable.value.action, unavailable.value.status) == (Action.RETRY, 503)


@pytest.mark.parametrize("reason", ["IMAGE_FILE_EXCEEDS_MAX_SIZE", "FILE_EXCEEDS_MAX_SIZE"])
async def test_an_image_novita_finds_too_large_fails_alone(tmp_path: Path, reason: str) -> None:
    """No size limit is documented (none is set locally); a refusal naming size fails the item."""
    body = {"code": 400, "reason": reason, "message": "image too large", "metadata": {}}
    api = FakeApi(Canned(400, body))
    novita = NovitaProvider(context(api, "novita"))
    assert novita.caps.max_size is None
    with pytest.raises(TransferError) as info:
        await novita.acquire(source(tmp_path))
    assert (info.value.action, info.value.code) == (Action.FAIL_ITEM, reason)
