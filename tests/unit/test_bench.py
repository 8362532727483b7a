"""`ingest bench`'s pieces without processes: sizes, percentiles, the timing wrapper, the verdict."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ingest.bench.dataset import image_bytes, make_images, write_manifest
from ingest.bench.runner import (
    EMULATOR_MODEL,
    BenchOptions,
    ProcessUsage,
    bench_settings,
    build_report,
    render,
)
from ingest.bench.timing import percentile, timed
from ingest.bench.verdict import verdict
from ingest.capabilities import Capabilities
from ingest.cli.bench import parse_size
from ingest.errors import Action, ConfigError, TransferError
from ingest.item import Item, Source
from ingest.lease import Lease
from ingest.manifest import read_manifest
from ingest.providers.base import Landed, Target
from ingest.sniff import TAIL_BYTES, ImageType, sniff, truncation


def test_parse_size_units() -> None:
    assert parse_size("65536") == 65536
    assert parse_size("64KiB") == 64 * 1024
    assert parse_size("16MiB") == 16 * 2**20
    assert parse_size("1.5MB") == 1_500_000
    for bad in ("", "12 parsecs", "10"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.99) == 3.0
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 0.5) in (50.0, 51.0)
    assert percentile(samples, 0.99) == 99.0


@pytest.mark.parametrize("kind", ["png", "jpeg", "webp"])
def test_images_are_sniffable_exact_and_distinct(kind: Any) -> None:
    first, second = image_bytes(kind, 5000, 1), image_bytes(kind, 5000, 2)
    assert len(first) == len(second) == 5000
    assert first != second
    assert image_bytes(kind, 5000, 1) == first
    assert sniff(first[:64]) is ImageType[kind.upper()]
    # Whole, as validation reads them: a PNG without IEND or JPEG without EOI is rejected.
    assert truncation(ImageType[kind.upper()], first[-TAIL_BYTES:], whole=False) is None


def test_manifest_cycles_files_under_distinct_ids(tmp_path: Path) -> None:
    paths = make_images(tmp_path / "img", 3, 128)
    manifest = write_manifest(paths, tmp_path / "m.jsonl", entries=7)
    items = list(read_manifest(manifest))
    assert all(isinstance(item, Item) for item in items)
    assert len({item.key for item in items if isinstance(item, Item)}) == 7
    assert {item.path for item in items if isinstance(item, Item)} == set(paths)


class _Fake:
    name: ClassVar[str] = "fake"

    def __init__(self, now: list[float], fail: TransferError | None = None) -> None:
        self.caps = Capabilities(formats=frozenset(ImageType), max_size=None, url_lifetime_s=10)
        self.now = now
        self.fail = fail

    async def acquire(self, source: Source) -> Target:
        if self.fail is not None:
            raise self.fail
        lease = Lease(expires_at=self.now[0] + 10, granted_s=10, source="default")
        return Target("r1", "http://127.0.0.1/x", "image/png", lease)

    async def transfer(self, source: Source, target: Target) -> Target:
        return target

    async def finalize(
        self, batch: Sequence[tuple[Source | None, Target]]
    ) -> list[Landed | TransferError]:
        return []

    def landed(self, source: Source, target: Target) -> Landed:
        return Landed(target.remote_id)


@pytest.mark.anyio
async def test_timed_provider_records_queueing_and_429s() -> None:
    now = [1000.0]
    source = Source(Item("k", Path("x.png"), 1), 10, 0, ImageType.PNG)
    provider = timed(_Fake(now))
    provider._clock = lambda: now[0]
    assert provider.name == "fake"
    target = await provider.acquire(source)
    now[0] += 4.0  # the target waited 4 s for a PUT slot
    await provider.transfer(source, target)
    t = provider.timings
    assert (t.acquires, t.transfers) == (1, 1)
    assert list(t.queued_s) == [4.0]
    assert list(t.granted_s) == [10.0]
    assert len(t.acquire_s) == len(t.transfer_s) == 1

    throttled = timed(
        _Fake(
            now,
            TransferError(
                "slow down",
                action=Action.RETRY,
                code="x",
                provider="fake",
                op="acquire",
                status=429,
            ),
        )
    )
    with pytest.raises(TransferError):
        await throttled.acquire(source)
    assert throttled.timings.api_429 == 1
    assert len(throttled.timings.acquire_s) == 1


def _report(**over: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "client": {
            "process_wall_s": 2.0,
            "cpu_s": 1.0,
            "loop_busy": 0.4,
            "cpu_ms_per_file": 0.5,
        },
        "emulator": {"cpu_cores": 0.3},
        "throttling": {"per_1000_files": 0.0},
        "latency_ms": {"api": {"p50": 2.0}, "put": {"p50": 15.0}},
    }
    for section, values in over.items():
        report[section] = {**(report[section] or {}), **values} if values else None
    return report


def test_verdict_names_each_bottleneck() -> None:
    assert verdict(_report(), cores=2)[0] == "storage bandwidth"
    assert verdict(_report(emulator={"cpu_cores": 0.95}), cores=2)[0] == "the emulator itself"
    assert verdict(_report(throttling={"per_1000_files": 40.0}), cores=2)[0] == (
        "provider rate limit"
    )
    assert verdict(_report(client={"loop_busy": 0.9}), cores=2)[0] == "client CPU"
    assert verdict(_report(latency_ms={"api": {"p50": 90.0}}), cores=2)[0] == (
        "provider API latency"
    )
    assert verdict(_report(emulator=None), cores=2)[0] == "storage bandwidth"


def _client(
    done: int, *, failed: int = 0, stop: str | None = None, message: str | None = None
) -> dict[str, Any]:
    """What `ingest.bench.client` prints, for a run whose URLs were granted 118.95 s."""
    q = {"p50": 0.01, "p99": 0.02, "max": 0.03}
    return {
        "done": done,
        "failed": failed,
        "rejected": 0,
        "bytes": done * 4096,
        "resigns": 0,
        "retries": 0,
        "stop_reason": stop,  # the StopReason's value; its message beside it
        "stop_message": message,
        "elapsed_s": 1.0,
        "loop_cpu_s": 0.2,
        "api_429": 0,
        "put_429": 0,
        "api_latency_s": q,
        "put_latency_s": q,
        "queued_s": q,
        "granted_s": {"p50": 118.95, "p99": 119.0, "max": 119.0},
        "queued_share": q,
    }


def _built(client: dict[str, Any], **options: Any) -> dict[str, Any]:
    usage = ProcessUsage(wall_s=2.0, cpu_s=0.5, peak_rss_bytes=40 << 20, status=0)
    return build_report(BenchOptions(count=50, **options), None, client, usage, 0.1, {})


def test_no_bottleneck_is_named_for_a_failed_or_stopped_run() -> None:
    breaker = "circuit breaker: 25 items in a row failed with http_404"
    tripped = {"stop": "circuit_breaker", "message": breaker}
    for client in (_client(0, failed=34, **tripped), _client(49, failed=1)):
        report = _built(client)
        assert report["verdict"]["bottleneck"] is None
        last = render(report).splitlines()[-1]
        assert last.startswith("verdict: none — the run did not finish (")
        assert not last.startswith("verdict: bottleneck")
    stopped = _built(_client(0, failed=34, **tripped))
    assert stopped["verdict"]["reason"].startswith(
        "the run did not finish (0 of 50 files done, it stopped early)"
    )
    # The reason's value and its message, apart (the client reported the message as the reason).
    assert stopped["result"]["stop_reason"] == "circuit_breaker"
    assert f"  stopped    circuit_breaker: {breaker}" in render(stopped).splitlines()
    assert _built(_client(49, failed=1))["verdict"]["reason"].startswith(
        "the run did not finish (49 of 50 files done, 1 not done)"
    )
    slower_puts = {"p50": 0.02, "p99": 0.03, "max": 0.03}  # equal medians name no stage
    finished = _built({**_client(50), "put_latency_s": slower_puts})
    assert finished["verdict"]["bottleneck"] is not None
    assert render(finished).splitlines()[-1].startswith("verdict: bottleneck is ")


def test_queueing_is_reported_against_the_emulators_lifetime_not_the_granted_reading() -> None:
    # A lease's granted time reads ~1 s short (whole-second signing times): "of a 119 s URL
    # lifetime" was printed for the default 120.
    assert "of a 120 s URL lifetime" in render(_built(_client(50)))
    assert "of a 5 s URL lifetime" in render(_built(_client(50), lifetime_s=5.0))
    assert "of a 30 s URL lifetime" in render(_built(_client(50), faults="seed=1,lifetime=30"))


def test_bench_settings_name_a_scenario_model_only_on_the_emulator() -> None:
    assert bench_settings("scenario", {}, emulator=True) == {"model_id": EMULATOR_MODEL}
    assert bench_settings("scenario", {"model_id": "m-1"}, emulator=True) == {"model_id": "m-1"}
    assert bench_settings("novita", {}, emulator=True) == {}
    with pytest.raises(ConfigError, match="model_id: required"):
        bench_settings("scenario", {}, emulator=False)
    with pytest.raises(ConfigError, match="NOVITA_API_KEY_UNSET_IN_TESTS is empty or not set"):
        bench_settings("novita", {"api_key_env": "NOVITA_API_KEY_UNSET_IN_TESTS"}, emulator=False)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--reference", "--base-url", "http://127.0.0.1:9"], "drop --base-url"),
        (["--reference", "--faults", "api.429=0.1"], "need the emulator"),
        (["--rounds", "2"], "--rounds applies to --reference"),
    ],
)
def test_reference_flags_that_cannot_apply_are_bad_usage(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ingest.cli.main import main

    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert says in err
    assert len(err.strip().splitlines()) == 1


def test_the_report_names_the_engines_put_transport() -> None:
    assert "(emulator, lean PUTs)" in render(_built(_client(50))).splitlines()[0]
    fallback = _built(_client(50), put_transport="aiohttp")
    assert fallback["config"]["put_transport"] == "aiohttp"
    assert "(emulator, aiohttp PUTs)" in render(fallback).splitlines()[0]


def test_a_bench_on_a_loaded_machine_says_so_as_the_reference_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Newcomer8: at load 6.8 on 2 cores `ingest bench` named "storage bandwidth" from a PUT's
    # 28.2 ms against an API call's 28.1 ms (both the machine's queues) and said nothing of
    # the load; `--reference` notes it.
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    usage = ProcessUsage(wall_s=2.0, cpu_s=0.5, peak_rss_bytes=40 << 20, status=0)
    options = BenchOptions(count=50)
    loaded = build_report(options, None, _client(50), usage, 0.1, {}, load_1m_before=6.8)
    assert loaded["load_1m_before"] == 6.8
    assert render(loaded).splitlines()[-2] == (
        "  note       the load average was 6.8 on 2 cores before the run: other work shared "
        "the machine, so figures move between runs"
    )
    quiet = build_report(options, None, _client(50), usage, 0.1, {}, load_1m_before=0.5)
    assert "load average" not in render(quiet)
