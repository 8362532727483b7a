"""Secrets: no key and no URL signature anywhere a user or a log could see them.

Every command runs with every provider key set to a known sentinel value,
against emulators whose faults drive each error path (429, 5xx, resets mid
body, stalls and timeouts, expiring URLs, a bad key, an outage that trips the
circuit breaker, a damaged journal). Then stdout, stderr, every file the runs
wrote (journals, backups, exports) and the text of every exception raised in
process are searched for the sentinels and for any signed query value
(`X-Amz-Signature=…`, `X-Amz-Credential=…`, `Signature=…`) that escaped
redaction. The emulator's record of storage request headers proves that no
Authorization or x-api-key header ever reached a storage host.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from ingest.cli.main import COMMANDS, main
from ingest.config import DEFAULT_PROVIDERS
from ingest.errors import TransferError
from ingest.http import Timeouts, api_session, storage_session
from ingest.item import Item, Source
from ingest.providers import PROVIDER_NAMES, provider_class
from ingest.providers.base import Provider, Target
from ingest.providers.context import Context
from ingest.redact import register_secret
from ingest.sim import FaultPlan, SimSettings, serve
from ingest.sniff import ImageType
from ingest.transport.session import Session
from tests.images import make_dataset, make_image, write_jsonl_manifest
from tests.simproc import SimProcess, read_journal, run_ingest, sim_process
from tests.torture import LEAKED_SIGNATURE, SENTINELS, Spec, config, ingest_repair, spec

# Headers a storage PUT may carry; anything else (authorization, x-api-key, cookies) is a leak.
STORAGE_HEADERS = {
    "accept",
    "accept-encoding",
    "content-length",
    "content-type",
    "host",
    "user-agent",
}
FAULTS = (
    "seed=21,api.429=0.08,api.retry_after=0.1,api.500=0.05,api.503=0.05,api.stall=0.03,"
    "put.429=0.05,put.500=0.05,put.503=0.05,put.reset=0.2,put.stall=0.03"
)


def leaks(where: str, text: str) -> Iterator[str]:
    for variable, value in SENTINELS.items():
        if value in text:
            yield f"{where}: the value of {variable}"
    for match in LEAKED_SIGNATURE.finditer(text):
        yield f"{where}: {match.group(0)[:60]}"


class Evidence:
    """Everything the runs showed or wrote, to be searched at the end."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []
        self.sims: list[dict[str, object]] = []

    def add(self, where: str, done: object) -> None:
        self.texts.append((f"{where} stdout", getattr(done, "stdout", "") or ""))
        self.texts.append((f"{where} stderr", getattr(done, "stderr", "") or ""))

    def sim(self, sim: SimProcess) -> None:
        self.sims.append(sim.stats())

    def files(self, root: Path) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix not in (".png", ".jpg", ".webp"):
                self.texts.append((str(path), path.read_bytes().decode("utf-8", "replace")))

    def problems(self) -> list[str]:
        found = [leak for where, text in self.texts for leak in leaks(where, text)]
        for stats in self.sims:
            for name in ("storage_with_authorization", "storage_with_api_key"):
                if stats[name]:
                    found.append(f"emulator: {stats[name]} storage requests with {name}")
            headers = stats["storage_headers"]
            assert isinstance(headers, dict)
            extra = set(headers) - STORAGE_HEADERS
            if extra:
                found.append(f"emulator: storage requests carried {sorted(extra)}")
        return found


def provider_runs(s: Spec, tmp: Path, evidence: Evidence) -> None:
    paths = make_dataset(tmp / "images", 24, min_size=512, max_size=8 * 1024, seed=201)
    for index in range(4):  # streamed bodies, so resets land mid-body
        big = tmp / "images" / f"big-{index}.png"
        make_image(big, "png", 400_000 + index, seed=210 + index)
        paths.append(big)
    manifest = write_jsonl_manifest(paths, tmp / "manifest.jsonl")
    journal = s.journal(manifest)
    run = {"read_timeout_s": 1.0, "backoff_base_s": 0.02, "put_concurrency": 4, "lookahead": 12}
    # First with 1 attempt per step, so that items fail and their errors are printed;
    # then with enough attempts to finish (the failed items are retried).
    impatient = config(tmp / "impatient.toml", max_attempts=1, retry_window_s=0, **run)
    patient = config(tmp / "patient.toml", max_attempts=12, **run)
    # 3 s lifetimes make URLs re-signed mid-run. ModelHunter's emulator also forgets a file
    # whose URL expired before its complete, and a second such refusal fails the item: on a
    # loaded machine the finishing run then failed items (seen in CI), so it gets 10 s.
    lifetime = "10" if s.name == "modelhunter" else "3"
    with sim_process("--lifetime", lifetime, "--faults", FAULTS, *s.sim_flags) as sim:
        failing = run_ingest(
            s.run_args(manifest, sim, "--plain", "--config", str(impatient)), env=s.env()
        )
        assert failing.returncode in (0, 1), failing.stderr
        evidence.add(f"{s.name} run --plain", failing)
        done = run_ingest(
            s.run_args(manifest, sim, "--json", "--config", str(patient)), env=s.env()
        )
        assert done.returncode == 0, done.stderr
        evidence.add(f"{s.name} run --json", done)
        evidence.sim(sim)
    with sim_process("--key", "sk-only-this-key-is-valid", *s.sim_flags) as sim:
        fresh = write_jsonl_manifest(paths[:5], tmp / "again.jsonl")
        bad_key = run_ingest(s.run_args(fresh, sim, "--plain"), env=s.env())
        assert bad_key.returncode == 3, bad_key.stderr
        # The stop names where the key was read (newcomer8: "403 INVALID_API_KEY" alone).
        assert f"check the API key in {' and '.join(s.keys)} " in bad_key.stderr, bad_key.stderr
        evidence.add(f"{s.name} bad key", bad_key)
        evidence.sim(sim)
    # `status` and `export` print the same text in this process (no interpreter start-up).
    for fmt in ("jsonl", "csv", "provider"):
        evidence.add(
            f"{s.name} export {fmt}", read_journal(["export", str(journal), "--format", fmt])
        )
    evidence.add(f"{s.name} status", read_journal(["status", str(journal), "--json"]))
    evidence.add(f"{s.name} status", read_journal(["status", str(journal)]))


def assert_no_leak(evidence: Evidence, root: Path) -> None:
    evidence.files(root)
    problems = evidence.problems()
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("provider", PROVIDER_NAMES)
def test_no_secret_in_a_providers_runs_files_or_storage_headers(
    provider: str, tmp_path: Path
) -> None:
    """One test per provider (not one sweep over all four), so that they can run side by side."""
    evidence = Evidence()
    provider_runs(spec(provider), tmp_path, evidence)
    printed = sum(text.count("failed  line") for _where, text in evidence.texts)
    assert printed >= 1, "the runs printed no item failure to test its text"
    assert_no_leak(evidence, tmp_path)


@pytest.mark.slow
def test_no_secret_in_the_other_commands_and_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    evidence = Evidence()
    s = spec("novita")
    paths = make_dataset(tmp_path / "images", 20, min_size=512, max_size=8 * 1024, seed=201)
    manifest = write_jsonl_manifest(paths, tmp_path / "manifest.jsonl")
    journal = tmp_path / "sim.journal"
    args = ["run", str(manifest), "--provider", "novita", "--sim", "--plain"]
    done = run_ingest([*args, "--journal", str(journal)], env=s.env())
    assert done.returncode == 0, done.stderr
    evidence.add("run --sim", done)
    settings = config(
        tmp_path / "outage.toml",
        circuit_breaker=5,
        max_attempts=2,
        backoff_base_s=0.01,
        retry_window_s=0,
    )
    with sim_process("--faults", "seed=22,api.503=1") as sim:
        stopped = run_ingest(
            s.run_args(manifest, sim, "--plain", "--config", str(settings)), env=s.env()
        )
        assert stopped.returncode == 3 and "circuit breaker" in stopped.stderr
        evidence.add("outage", stopped)
        for command in ("validate",):
            if command in COMMANDS:
                evidence.add(
                    command,
                    run_ingest([command, str(manifest), "--provider", "novita"], env=s.env()),
                )
        if "retry-failed" in COMMANDS:
            evidence.add(
                "retry-failed",
                run_ingest(
                    [
                        "retry-failed",
                        str(s.journal(manifest)),
                        "--base-url",
                        sim.base_url,
                        "--plain",
                        "--config",
                        str(settings),
                    ],
                    env=s.env(),
                ),
            )
        evidence.sim(sim)
    if "config" in COMMANDS:
        for name in PROVIDER_NAMES:
            shown = run_ingest(["config", "show", "--provider", name], env=spec(name).env())
            assert shown.returncode == 0, shown.stderr
            evidence.add(f"config show {name}", shown)
    # A damaged journal: the refusal, the repair and its backup.
    damaged = tmp_path / "damaged.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[len(lines) // 2] = b"garbage\n"
    damaged.write_bytes(b"".join(lines))
    evidence.add("status damaged", read_journal(["status", str(damaged)]))
    evidence.add("repair", ingest_repair(damaged))
    # Help is argparse's text of the parser: the same in this process, with the keys set.
    for variable, value in s.env().items():
        monkeypatch.setenv(variable, value)
    for command in COMMANDS:
        with pytest.raises(SystemExit) as left:
            main([command, "--help"])
        assert left.value.code == 0
        helped = capsys.readouterr()
        assert "usage: ingest" in helped.out, helped
        evidence.texts.append((f"{command} --help", helped.out + helped.err))
    assert len(evidence.texts) > 25
    assert_no_leak(evidence, tmp_path)


# --- in process: the text of every exception ---------------------------------------------


def exception_texts(err: BaseException) -> str:
    """str, repr and the whole printed chain (what a traceback would show)."""
    return "\n".join((str(err), repr(err), "".join(traceback.format_exception(err))))


@pytest.mark.anyio
async def test_exception_text_never_holds_a_secret(tmp_path: Path) -> None:
    for value in SENTINELS.values():
        register_secret(value)
    path = tmp_path / "big.png"
    make_image(path, "png", 900_000, seed=220)
    source = Source(
        Item(key="k", path=path, line=1), 900_000, path.stat().st_mtime_ns, ImageType.PNG
    )
    small = tmp_path / "small.png"
    make_image(small, "png", 3_000, seed=221)
    small_source = dataclasses.replace(source, item=Item(key="s", path=small, line=2), size=3_000)
    texts: list[str] = []
    async with serve(SimSettings(url_lifetime_s=60, api_keys=frozenset({"sk-valid"}))) as sim:
        timeouts = Timeouts(connect=2, read=1)
        settings = dataclasses.replace(DEFAULT_PROVIDERS["novita"], base_url=sim.base_url)
        cls = provider_class("novita")

        async def adapter(key: str) -> tuple[Provider, Session, Session]:
            api = api_session(
                sim.base_url + "/", cls.auth_headers({"api_key_env": key}), timeouts, 4
            )
            storage = storage_session(timeouts, 4)
            return cls(Context(api=api, storage=storage, settings=settings)), api, storage

        bad, bad_api, bad_storage = await adapter(SENTINELS["NOVITA_API_KEY"])
        good, api, storage = await adapter("sk-valid")
        try:
            with pytest.raises(TransferError) as refused:
                await bad.acquire(small_source)
            texts.append(exception_texts(refused.value))
            target: Target = await good.acquire(source)
            assert target.url is not None and "X-Amz-Signature=" in target.url
            texts.append(repr(target))
            signature = target.url.rsplit("X-Amz-Signature=", 1)[1]
            tampered = dataclasses.replace(target, url=target.url[:-4] + "0000")
            failures = [
                ("signature", tampered, ""),
                ("reset", target, "seed=1,put.reset=1"),
                ("stall", target, "seed=1,put.stall=1"),
                ("5xx", target, "seed=1,put.500=1"),
                ("expired", target, "seed=1,skew=120"),
            ]
            for what, used, plan in failures:
                sim.set_faults(FaultPlan.parse(plan))
                with pytest.raises(TransferError) as failed:
                    await good.transfer(source, used)
                texts.append(f"[{what}] " + exception_texts(failed.value))
            sim.set_faults(FaultPlan())
            path.unlink()
            with pytest.raises(TransferError) as gone:
                await good.transfer(source, target)
            texts.append("[gone] " + exception_texts(gone.value))
        finally:
            with anyio.CancelScope(shield=True):
                for session in (bad_api, bad_storage, api, storage):
                    await session.close()
    found = [leak for text in texts for leak in leaks("exception", text)]
    found += [f"exception: the URL's signature {signature[:12]}…" for t in texts if signature in t]
    assert not found, "\n".join(found)


@pytest.mark.anyio
async def test_transport_errors_that_name_the_url_are_redacted_message_and_chain() -> None:
    """aiohttp names the signed URL in some errors; neither the message nor the chain keeps it."""
    import aiohttp

    from ingest.http import map_errors

    url = (
        "http://127.0.0.1:9/s3/b/k.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Signature=5e1f0c2d9a8b7e6f5e1f0c2d9a8b7e6f5e1f0c2d9a8b7e6f5e1f0c2d9a8b7e6f"
    )
    key = SENTINELS["NOVITA_API_KEY"]
    register_secret(key)
    causes: list[BaseException] = [
        aiohttp.ClientOSError(None, f"Can not write request body for {url}"),
        aiohttp.ClientConnectionError(f"{url} with {key}"),
        ConnectionResetError(f"reset while sending to {url}"),
    ]
    for cause in causes:
        with pytest.raises(TransferError) as mapped:
            async with map_errors("novita", "transfer"):
                raise cause
        text = exception_texts(mapped.value)
        assert "X-Amz-Signature=REDACTED" in text
        assert not list(leaks("exception", text)), text
        assert "5e1f0c2d9a8b" not in text and key not in text
        assert mapped.value.__cause__ is not None
        assert getattr(mapped.value.__cause__, "original", None) is cause  # kept, not printed
