"""Defects noticed in session 9 (fixes10): a fetched source of a type the provider does not
take is a rejection, as a local file's is; source-fetch failures are not the provider's for
the circuit breaker; a temporary DNS failure of a source gets the run's retry budget; a
resume given a --format its journal does not record says so without blaming an older
ingest."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import aiohttp
import orjson
import pytest

import ingest
from ingest.cli.main import main
from ingest.config import RunSettings
from ingest.engine.breaker import Breaker
from ingest.engine.settings import EngineSettings
from ingest.errors import Action, TransferError
from ingest.http import Timeouts
from ingest.item import Item, Source
from ingest.remote import Fetcher
from ingest.sniff import ImageType
from tests.images import make_dataset, write_jsonl_manifest
from tests.loopback import serving


def _heic() -> bytes:
    pillow_heif = pytest.importorskip("pillow_heif")  # the convert extra, in dev
    from PIL import Image

    pillow_heif.register_heif_opener()
    out = io.BytesIO()
    Image.effect_mandelbrot((48, 32), (-2, -1.5, 1, 1.5), 40).convert("RGB").save(out, "HEIF")
    return out.getvalue()


@pytest.fixture
def served() -> Iterator[tuple[dict[str, bytes], str]]:
    """A loopback server of `bodies` (name -> bytes) and its base URL."""
    bodies: dict[str, bytes] = {}

    def answer(request: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        body = bodies.get(request.path.lstrip("/"))
        return (200, body) if body is not None else (404, b"")

    with serving(answer) as base:
        yield bodies, base


def test_a_fetched_heic_without_convert_is_rejected_and_a_re_run_with_convert_uploads_it(
    served: tuple[dict[str, bytes], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It failed as source_failed (journaled `fail`, not retried), so the same command with
    # --convert did nothing; a local HEIC is rejected, and --convert then converts it.
    bodies, base = served
    bodies["phone.heic"] = _heic()
    url = f"{base}/phone.heic"
    manifest = tmp_path / "m.jsonl"
    (tmp_path / "local.heic").write_bytes(bodies["phone.heic"])
    lines = ({"path": url}, {"path": str(tmp_path / "local.heic")})
    manifest.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    run = ["run", str(manifest), "--provider", "novita", "--sim", "--quiet"]
    assert main(run) == 1
    said = capsys.readouterr()
    assert (
        f"rejected line 1: unsupported image type heic (novita accepts jpeg, png, webp; "
        f"--convert converts it): {url}" in said.err
    )
    assert "0 failed, 2 rejected" in said.err
    # One problem row for both: the URL is taken out of the group as the path is.
    assert "2  rejected/unsupported image type heic (novita accepts jpeg, png, webp; " in said.err
    recs = [r for r in _records(tmp_path) if r.get("s") in ("bad", "fail")]
    assert sorted((str(r["s"]), str(r["l"])) for r in recs) == [("bad", "1"), ("bad", "2")]
    assert main([*run, "--convert"]) == 0
    done = [r for r in _records(tmp_path) if r.get("s") == "done"]
    assert len(done) == 2 and all(str(r["cv"]).startswith("heic sha256:") for r in done)


def _journal(folder: Path) -> Path:
    [journal] = folder.glob("*.journal")
    return journal


def _records(folder: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in _journal(folder).read_bytes().splitlines()]


def _source_error(message: str = "cannot reach the source: connection refused") -> TransferError:
    return TransferError(
        message, action=Action.FAIL_ITEM, code="source_failed", provider="novita", op="fetch"
    )


def test_source_failures_never_trip_the_breaker_and_leave_the_providers_streak_alone() -> None:
    # 200 URLs on a dead host stopped the run: "circuit breaker: 25 items in a row failed with
    # source_failed (…); the provider looks unavailable" (the provider was fine).
    breaker = Breaker(3)
    assert all(breaker.failed(_source_error()) is None for _ in range(200))
    provider = TransferError("HTTP 500", action=Action.RETRY, code="500", provider="n", op="x")
    assert breaker.failed(provider) is None and breaker.failed(provider) is None
    assert breaker.failed(_source_error()) is None  # between two of the provider's
    assert breaker.failed(provider) is not None


def test_urls_on_a_dead_host_each_fail_and_the_run_goes_to_its_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # bound, not listening: every connect is refused
        sock.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        manifest = tmp_path / "m.jsonl"
        urls = [f"{base}/{n}.png" for n in range(6)]
        manifest.write_bytes(b"".join(orjson.dumps({"path": url}) + b"\n" for url in urls))
        run = ["run", str(manifest), "--provider", "novita", "--sim", "--quiet"]
        assert main([*run, "--circuit-breaker", "2"]) == 1  # not 3: stopped
    said = capsys.readouterr().err
    assert "circuit breaker" not in said and "provider looks unavailable" not in said
    assert "6  fail_item/source_failed  → the source server refused" in said
    assert "6 items not uploaded (6 failed, 0 rejected, 0 unfinished)" in said
    reasons = {f.reason for f in ingest.failures(_journal(tmp_path))}
    assert reasons == {
        f"cannot reach the source: connection refused (after 3 tries): {url}" for url in urls
    }


def _tries(exc: Exception) -> tuple[int, TransferError]:
    """How many times a fetch whose every connect raises `exc` is tried, with the run's
    default policy (8 tries, at least 90 s), and what it fails with."""
    slept: list[float] = []
    tries = 0

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    fetcher = Fetcher(
        provider="novita",
        formats=frozenset({ImageType.PNG}),
        policy=EngineSettings(RunSettings()).retry,
        timeouts=Timeouts(connect=5, read=5),
        concurrency=1,
        max_size=None,
        sleep=sleep,
        now=lambda: sum(slept),
    )
    url = "http://images.example/x.png"
    item = Item(key=url, path=Path(url), line=1, url=url)

    async def opened(item: Item) -> object:
        nonlocal tries
        tries += 1
        raise fetcher._failure(item, exc)  # where the code maps a connect's errors

    fetcher._opened = opened  # type: ignore[method-assign,assignment]

    async def fetch() -> TransferError:
        try:
            await fetcher.fetch(Source(item=item, size=0, mtime_ns=0, image_type=ImageType.PNG))
        except TransferError as err:
            return err
        finally:
            await fetcher.aclose()
        raise AssertionError("fetched")

    err = asyncio.run(fetch())
    return tries, err


def _dns_error(code: int, text: str) -> aiohttp.ClientConnectorDNSError:
    key = aiohttp.client_reqrep.ConnectionKey("images.example", 80, False, True, None, None, None)
    return aiohttp.ClientConnectorDNSError(key, socket.gaierror(code, text))


def test_a_temporary_dns_failure_gets_the_runs_retry_budget_a_name_not_found_three_tries() -> None:
    # EAI_AGAIN ("Temporary failure in name resolution") was taken as a name not found:
    # 3 short tries, as for a refusal, though the next try may well resolve.
    again, err = _tries(_dns_error(socket.EAI_AGAIN, "Temporary failure in name resolution"))
    assert again >= 8 and err.action is Action.FAIL_ITEM  # 8 tries and 90 s, as any outage
    assert err.message == (
        "cannot reach the source: host not found (Temporary failure in name resolution) "
        f"(after {again} tries): http://images.example/x.png"
    )
    unknown, _ = _tries(_dns_error(socket.EAI_NONAME, "Name or service not known"))
    assert unknown == 3


def test_a_resume_given_the_detected_format_says_nothing_and_another_names_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # "journal … does not record its format (written by an older ingest), so they are not
    # checked": the journal was this ingest's, made without --format (the manifest detected).
    manifest = write_jsonl_manifest(make_dataset(tmp_path / "img", 2), tmp_path / "m.jsonl")
    run = ["run", str(manifest), "--provider", "novita", "--sim", "--quiet"]
    assert main(run) == 0
    capsys.readouterr()
    assert main([*run, "--format", "jsonl"]) == 0
    assert "format" not in capsys.readouterr().err
    main([*run, "--format", "list"])
    assert (
        f"journal {_journal(tmp_path)} records no --format (its runs read the manifest as "
        "detected, jsonl), so it is not checked: this run reads it as list"
    ) in capsys.readouterr().err.splitlines()
