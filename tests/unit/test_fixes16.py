"""fixes16: defects found in review, each with the test that showed it."""

from __future__ import annotations

import re
import socket
import sys
import types
from pathlib import Path

import aiohttp
import orjson
import pytest

from ingest.errors import Action
from tests.unit.test_fixes10 import _tries


class _DNSError(Exception):
    """`aiodns.error.DNSError`: raised as ``DNSError(code, pycares.errno.strerror(code))``."""


def _aiodns_error(code: int, text: str) -> aiohttp.ClientConnectorDNSError:
    """As aiohttp's `AsyncResolver.resolve` and `TCPConnector` build it with aiodns:
    ``raise OSError(None, msg) from DNSError(code, msg)``, then
    ``ClientConnectorDNSError(key, that OSError)``."""
    os_error = OSError(None, text)
    os_error.__cause__ = _DNSError(code, text)
    key = aiohttp.client_reqrep.ConnectionKey("images.example", 80, False, True, None, None, None)
    return aiohttp.ClientConnectorDNSError(key, os_error)


@pytest.fixture
def aiodns(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiodns is not a dependency: its error module as aiohttp would have imported it."""
    errors = types.ModuleType("aiodns.error")
    errors.DNSError = _DNSError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aiodns.error", errors)


@pytest.mark.usefixtures("aiodns")
def test_an_aiodns_timeout_gets_the_runs_retry_budget_its_name_not_found_three_tries() -> None:
    # With aiodns installed only getaddrinfo's EAI_AGAIN was temporary: c-ares's timeout
    # (ARES_ETIMEOUT, 12) was refused as a name not found after 3 short tries.
    again, err = _tries(_aiodns_error(12, "Timeout while contacting DNS servers"))
    assert again >= 8 and err.action is Action.FAIL_ITEM  # 8 tries and 90 s, as any outage
    assert err.message == (
        "cannot reach the source: host not found (Timeout while contacting DNS servers) "
        f"(after {again} tries): http://images.example/x.png"
    )
    unreached, _ = _tries(_aiodns_error(11, "Could not contact DNS servers"))  # ECONNREFUSED
    assert unreached >= 8
    unknown, _ = _tries(_aiodns_error(4, "Domain name not found"))  # ARES_ENOTFOUND
    assert unknown == 3


def test_a_gaierror_is_still_read_by_its_errno() -> None:
    key = aiohttp.client_reqrep.ConnectionKey("images.example", 80, False, True, None, None, None)
    unknown = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    tries, _ = _tries(aiohttp.ClientConnectorDNSError(key, unknown))
    assert tries == 3


def _help(capsys: pytest.CaptureFixture[str], command: str) -> str:
    from ingest.cli.main import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())  # the help's lines, unwrapped


def test_run_help_names_every_manifest_it_reads(capsys: pytest.CaptureFixture[str]) -> None:
    # "JSON lines, CSV, a list of paths, or a folder": no shard, Parquet file or URL.
    shown = _help(capsys, "run")
    for kind in ("JSON lines", "CSV", "URLs (http(s)://, s3://)", "tar or zip shard", "Parquet"):
        assert kind in shown


def test_validate_help_names_its_exit_2_which_an_empty_manifest_gets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its help gave exit codes 0 and 1 only.
    from ingest.cli.main import main

    exit_2 = (
        "2 if it cannot be checked: a bad flag or setting, a manifest that cannot be read or "
        "holds nothing to upload, an s3:// source without boto3"
    )
    assert exit_2 in _help(capsys, "validate")
    empty = tmp_path / "m.jsonl"
    empty.write_text("")
    assert main(["validate", str(empty), "--provider", "novita"]) == 2
    missing = tmp_path / "gone.jsonl"
    assert main(["validate", str(missing), "--provider", "novita"]) == 2


def test_the_readme_gives_the_redirects_a_source_follows() -> None:
    # aiohttp refuses the redirect that reaches `max_redirects`: 5 follows 4.
    root = Path(__file__).resolve().parents[2]
    given = re.search(r"max_redirects=(\d+)", (root / "ingest/remote.py").read_text())
    assert given is not None
    readme = " ".join((root / "README.md").read_text(encoding="utf-8").split())
    assert f"redirects are followed, {int(given[1]) - 1} at most" in readme
    assert "an `https://` source that redirects to `http://` is followed there" in readme


@pytest.mark.parametrize("mode", ["--plain", "--json"])
def test_upload_urls_that_arrive_expired_by_their_own_date_are_warned_of_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    # A provider whose clock is 10 minutes behind signs 120 s URLs that are long dead on
    # ours: the leases follow its Date header, nothing said that storage on our time would
    # refuse each one (re-signing only brings another).
    from ingest.cli.main import main
    from tests.images import make_dataset, write_jsonl_manifest

    manifest = write_jsonl_manifest(make_dataset(tmp_path / "img", 3), tmp_path / "m.jsonl")
    run = ["run", str(manifest), "--provider", "novita", "--sim", "--sim-faults", "skew=-600"]
    assert main([*run, mode]) == 0
    out, err = capsys.readouterr()
    if mode == "--json":
        err = "".join(
            e["message"] + "\n" for e in map(orjson.loads, out.splitlines()) if e["event"] == "note"
        )
    warned = [line for line in err.splitlines() if line.startswith("warning: upload URLs")]
    assert len(warned) == 1, err
    assert re.search(r"signed 60[01] s before this machine's clock, valid 120 s\. ", warned[0])
    assert "about 60" in warned[0] and "?" not in warned[0] and "X-Amz-Signature" not in err


def test_a_url_with_time_left_on_our_clock_is_not_late() -> None:
    from ingest.lease import Lease, late_url, lease_for

    def lease(url: str) -> Lease | None:
        return lease_for(url=url, expires_at=None, date_header=None, sent_at=0.0,
                         received_at=0.0, default_lifetime=None)  # fmt: skip

    url = "https://s.example/k?X-Amz-Date=20260101T000000Z&X-Amz-Expires=120&X-Amz-Signature=s"
    signed = 1767225600.0  # 2026-01-01T00:00:00Z
    assert late_url(lease(url), signed + 100) is None
    late = late_url(lease(url), signed + 116)  # 4 s left: within the margin
    assert late is not None and (late.age_s, late.lifetime_s) == (116, 120)
    assert late_url(lease("https://s.example/k?Expires=1"), signed) is None  # no X-Amz-Date
