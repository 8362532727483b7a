"""An endpoint unreachable from the start: every provider stops at once, exit 3, one clear line.

`--base-url` points at a closed loopback port (bound, then closed: the kernel
refuses every connection to it). The run must stop on its first API calls
with exit code 3 and "cannot reach http://127.0.0.1:PORT: connection
refused", spend no retry and fail no item (the journal holds no `fail`
record, so the same command is all it takes once the endpoint is right).
The old behaviour retried each item for 18 s and failed them all (exit 1).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ingest.providers import PROVIDER_NAMES
from tests.images import make_dataset, write_jsonl_manifest
from tests.simproc import json_events, run_ingest
from tests.torture import journal_records, spec

API_CONCURRENCY = 4


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_a_closed_port_stops_the_run_at_once(tmp_path: Path, name: str) -> None:
    s = spec(name)
    paths = make_dataset(tmp_path / "images", 12, min_size=512, max_size=4 * 1024, seed=301)
    manifest = write_jsonl_manifest(paths, tmp_path / "manifest.jsonl")
    base = f"http://127.0.0.1:{closed_port()}"
    args = [
        "run",
        str(manifest),
        "--provider",
        name,
        "--base-url",
        base + s.base_path,
        "--api-concurrency",
        str(API_CONCURRENCY),
        *s.flags,
    ]
    plain = run_ingest([*args, "--plain"], env=s.env())
    assert plain.returncode == 3, plain.stderr
    assert "Traceback" not in plain.stderr
    assert f"stopped: cannot reach {base}: connection refused" in plain.stderr
    as_json = run_ingest([*args, "--json"], env=s.env())
    assert as_json.returncode == 3, as_json.stderr
    summary = json_events(as_json.stdout)[-1]
    assert summary["event"] == "summary"
    assert summary["stop_reason"] == "unreachable"
    assert summary["failed"] == 0 and summary["this_run"]["retries"] == 0
    # Each API slot tried once, and a resumed run's tidy call (this is the second run).
    assert summary["this_run"]["api_calls"] <= API_CONCURRENCY + 1
    assert not any(rec.get("s") == "fail" for rec in journal_records(s.journal(manifest)))
