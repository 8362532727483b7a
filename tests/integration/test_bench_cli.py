"""`ingest bench` as a user runs it: a tiny run, the --json schema, the verdict."""

from __future__ import annotations

import json

from tests.simproc import ingest_env, run_ingest

BOTTLENECKS = {
    "the emulator itself",
    "provider rate limit",
    "client CPU",
    "storage bandwidth",
    "provider API latency",
}


def test_bench_json_report() -> None:
    done = run_ingest(
        [
            "bench",
            "--count",
            "60",
            "--size",
            "8KiB",
            "--json",
            "--faults",
            "seed=3,api.429=0.05,api.retry_after=none",
        ],
        env=ingest_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["schema"] == 1
    assert set(report) >= {
        "config",
        "result",
        "latency_ms",
        "lease",
        "throttling",
        "client",
        "emulator",
        "verdict",
    }
    result = report["result"]
    assert result["done"] == 60
    assert result["failed"] == 0
    assert result["files_per_s"] > 0
    assert result["mib_per_s"] > 0
    for plane in ("api", "put"):
        latency = report["latency_ms"][plane]
        assert 0 < latency["p50"] <= latency["p99"]
    assert report["throttling"]["api_429"] > 0  # the fault plan's 429s were seen and counted
    assert report["throttling"]["per_1000_files"] > 0
    assert report["lease"]["granted_s_p50"] > 100  # the emulator's 120 s lifetime
    assert report["client"]["cpu_ms_per_file"] > 0
    assert report["client"]["peak_rss_mib"] > 10
    assert report["emulator"]["fast_path"] is True
    assert report["emulator"]["cpu_s"] > 0
    assert report["verdict"]["bottleneck"] in BOTTLENECKS
    assert report["verdict"]["reason"]


def test_bench_human_report_ends_with_verdict() -> None:
    done = run_ingest(["bench", "--count", "30", "--size", "4KiB"], env=ingest_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith("verdict: bottleneck is ")
    assert any(line.strip().startswith("throughput") for line in lines)


def test_bench_bad_usage() -> None:
    done = run_ingest(["bench", "--size", "12 parsecs"], env=ingest_env(), timeout=30)
    assert done.returncode == 2
