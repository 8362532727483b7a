"""Upload URLs that expire while queued or between retries, and a server clock minutes off ours.

A URL with too little life left is re-signed before its PUT starts, retries
included, so no PUT ever reaches storage with a dead URL (the emulator counts
every "Request has expired" it answers). Expiry is computed on the server's
clock, read from the API's Date header: with the emulator's clock five
minutes ahead or behind, long-lived URLs are never re-signed needlessly and
short-lived ones are re-signed in time.
"""

from __future__ import annotations

import email.utils
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.lease import lease_for
from tests.images import make_dataset, write_jsonl_manifest
from tests.simproc import sim_process
from tests.torture import config, finish, spec

NOVITA = spec("novita")


def dataset(tmp_path: Path, n: int, seed: int) -> tuple[list[Path], Path]:
    paths = make_dataset(tmp_path / "images", n, min_size=512, max_size=16 * 1024, seed=seed)
    return paths, write_jsonl_manifest(paths, tmp_path / "manifest.jsonl")


@pytest.mark.parametrize(
    ("case", "faults", "run"),
    [
        # Two upload slots, a long lookahead and slow uploads: URLs wait longer than they live.
        (
            "queued",
            "put.latency=0.5",
            {"put_concurrency": 2, "lookahead": 12, "api_concurrency": 4},
        ),
        # Backoff longer than a URL's life: a retry must not reuse the dead URL.
        (
            "between-retries",
            "put.503=0.35",
            {"put_concurrency": 4, "lookahead": 2, "backoff_base_s": 2.0, "max_attempts": 10},
        ),
    ],
)
def test_urls_expiring_before_their_put_are_resigned_not_used(
    tmp_path: Path, case: str, faults: str, run: dict[str, object]
) -> None:
    paths, manifest = dataset(tmp_path, 24, seed=91)
    settings = config(tmp_path / "ingest.toml", **run)
    with sim_process("--lifetime", "3", "--faults", f"seed=13,{faults}") as sim:
        done = finish(NOVITA, sim, manifest, paths, "--config", str(settings))
    assert done.proc.returncode == 0, done.proc.stderr
    assert done.verdict is not None and done.verdict.lost == done.verdict.duplicates == 0
    assert done.summary["failed"] == 0
    resigns = done.summary["this_run"]["resigns"]
    print(f"\nexpiry ({case}): {resigns} re-signs, {done.stats['expired']} PUTs of expired URLs")
    assert resigns > 0
    assert done.stats["expired"] == 0, "a PUT started with a URL that had already expired"
    # Every re-sign is one more URL asked for; none was wasted on a failure.
    assert done.stats["assets_issued"] == len(paths) + resigns


@pytest.mark.parametrize("skew", [-300, 300])
def test_server_clock_skew_long_lived_urls_are_not_resigned(tmp_path: Path, skew: int) -> None:
    paths, manifest = dataset(tmp_path, 40, seed=92)
    settings = config(tmp_path / "ingest.toml", put_concurrency=4, lookahead=8)
    with sim_process("--lifetime", "60", "--faults", f"seed=14,skew={skew},put.latency=0.1") as sim:
        done = finish(NOVITA, sim, manifest, paths, "--config", str(settings))
    assert done.proc.returncode == 0, done.proc.stderr
    assert done.verdict is not None and done.verdict.lost == done.verdict.duplicates == 0
    # On our clock a URL signed by a server 5 minutes behind looks long dead, and one
    # signed 5 minutes ahead not yet valid: only the Date header makes both right.
    assert done.summary["this_run"]["resigns"] == 0
    assert done.stats["expired"] == 0
    assert done.stats["assets_issued"] == len(paths)


@pytest.mark.parametrize("skew", [-300, 300])
def test_server_clock_skew_short_lived_urls_are_resigned_in_time(tmp_path: Path, skew: int) -> None:
    paths, manifest = dataset(tmp_path, 20, seed=93)
    settings = config(tmp_path / "ingest.toml", put_concurrency=2, lookahead=12, api_concurrency=4)
    plan = f"seed=15,skew={skew},put.latency=0.4"
    with sim_process("--lifetime", "3", "--faults", plan) as sim:
        done = finish(NOVITA, sim, manifest, paths, "--config", str(settings))
    assert done.proc.returncode == 0, done.proc.stderr
    assert done.verdict is not None and done.verdict.lost == done.verdict.duplicates == 0
    assert done.summary["failed"] == 0
    assert done.summary["this_run"]["resigns"] > 0
    assert done.stats["expired"] == 0


@given(
    skew=st.floats(-900, 900),
    signed_frac=st.floats(0, 0.999),
    rtt=st.floats(0, 2),
    answer_at=st.floats(0, 1),
    lifetime=st.integers(1, 900),
)
def test_a_lease_never_outlives_its_url(
    skew: float, signed_frac: float, rtt: float, answer_at: float, lifetime: int
) -> None:
    """Whatever the skew, round trip and sub-second phase, the lease ends no later than the URL.

    The server signs at some instant during the call (its clock = ours + skew),
    puts that second in X-Amz-Date and Date, and storage refuses the URL from
    X-Amz-Date + X-Amz-Expires on. Date has one-second resolution, so the
    naive skew (Date - our receive time) can be almost a second short, which
    made short leases outlive their URLs.
    """
    sent_at = 1_700_000_000.0 + signed_frac
    received_at = sent_at + rtt
    server_now = sent_at + answer_at * rtt + skew  # when the server answered, on its clock
    signed = int(server_now)  # X-Amz-Date and Date: whole seconds
    amz_date = email.utils.formatdate(signed, usegmt=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(signed))
    url = f"http://s/k?X-Amz-Date={stamp}&X-Amz-Expires={lifetime}&X-Amz-Signature=00"
    lease = lease_for(
        url=url,
        expires_at=None,
        date_header=amz_date,
        sent_at=sent_at,
        received_at=received_at,
        default_lifetime=None,
    )
    assert lease is not None
    dies_at_local = signed + lifetime - skew  # storage's deadline, on our clock
    assert lease.expires_at <= dies_at_local + 1e-6
    # ... and it is not needlessly short: at most a second plus the round trip.
    assert lease.expires_at >= dies_at_local - 1.0 - rtt - 1e-6
