"""`ingest bench`'s run: make images, start the emulator, run the measured client, report.

The client (`ingest.bench.client`) and the emulator (`ingest.bench.emulator`)
run as separate processes. Client CPU and peak RSS come from `os.wait4` on
the client process (start-up included, as a user pays it); the emulator's CPU
comes from ``/proc`` before and after, and its share is given in cores over
the client's wall time, so a reader can tell whether the emulator itself was
the limit. A real endpoint (`BenchOptions.base_url`) replaces the emulator.

Every provider benchmarks on the emulator: its settings come from the flags
(`bench_settings`, checked before anything starts), and a Scenario run that
names no model uses `EMULATOR_MODEL`, which the emulator creates. A verdict
names a bottleneck only for a run that finished with every file done; a
failed or stopped run says why there is none.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from ingest.bench.dataset import KINDS, Kind, make_images, write_manifest
from ingest.bench.verdict import verdict

SCHEMA = 1
EMULATOR_MODEL = "bench-model"  # Scenario's model on the emulator when none is named


def bench_settings(provider: str, given: Mapping[str, Any], *, emulator: bool) -> dict[str, Any]:
    """The provider settings of a benchmark run: the flags `given`, checked.

    On the emulator a Scenario run needs no model id (`EMULATOR_MODEL`) and no
    key. A bad value, a missing required one or (for a real endpoint) an unset
    key variable is a `ConfigError` here, before any image is made or process
    started.
    """
    from ingest.api.wiring import resolve_settings
    from ingest.config import check_key_variable, read_secrets
    from ingest.providers import provider_class

    chosen = dict(given)
    if emulator and provider == "scenario" and not chosen.get("model_id"):
        chosen["model_id"] = EMULATOR_MODEL
    resolved = resolve_settings(provider, None, chosen)
    cls = provider_class(provider)
    psettings = resolved.provider(provider)
    for name in cls.key_envs:
        check_key_variable(provider, name, getattr(psettings, name))
    cls.run_params(psettings, {})
    if not emulator:
        read_secrets(provider, psettings, cls.key_envs)  # a real endpoint needs its key set
    return chosen


@dataclass(frozen=True, slots=True)
class BenchOptions:
    provider: str = "novita"
    count: int = 1000
    size: int = 64 * 1024
    kinds: tuple[Kind, ...] = KINDS
    put_concurrency: int | None = None
    api_concurrency: int | None = None
    api_rate: float | None = None
    put_transport: str | None = (
        None  # "lean" or "aiohttp" (`[run] put_transport`); None: its default
    )
    lifetime_s: float = 120.0
    faults: str = ""
    base_url: str | None = None  # a real endpoint instead of the emulator
    fast_emulator: bool = True
    workdir: Path | None = None  # where images are generated (default: a temporary folder)
    settings: Mapping[str, Any] = field(default_factory=dict)  # provider settings (flags)


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int
    status: int


def run_measured(
    args: list[str],
    env: dict[str, str] | None = None,
    started: Callable[[int], None] | None = None,
) -> tuple[str, str, ProcessUsage]:
    """Run a child to its end; its stdout, stderr, and whole-process usage from `wait4`
    (`started` is told the child's pid: GNU time's, when it measures the peak RSS).

    Peak RSS comes from GNU time when it is installed: Linux carries a process's
    ``ru_maxrss`` across ``execve``, so a child forked from a large parent would
    report the parent's size; GNU time is small, and its child's figure is its own.
    """
    import shutil

    gnu_time = shutil.which("time") if os.path.exists("/usr/bin/time") else None
    report = None
    if gnu_time is not None:
        fd, report = tempfile.mkstemp(prefix="ingest-bench-rss-")
        os.close(fd)
        args = ["/usr/bin/time", "-f", "%M", "-o", report, *args]
    start = time.perf_counter()
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own group: GNU time and the client are stopped together
    )
    if started is not None:
        started(proc.pid)
    try:
        out, err = _drain(proc)
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): the measured processes go too
        import signal

        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if report is not None:
            os.unlink(report)
        raise
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_kib = usage.ru_maxrss
    if report is not None:
        try:
            lines = Path(report).read_text().split()
            peak_kib = int(lines[-1])
        except (OSError, ValueError, IndexError):
            pass
        finally:
            os.unlink(report)
    return (
        out,
        err,
        ProcessUsage(
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss_bytes=peak_kib * 1024,
            status=proc.returncode,
        ),
    )


def _drain(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Read both pipes to their ends without reaping the child (wait4 does that)."""
    import threading

    assert proc.stdout is not None
    assert proc.stderr is not None
    err_parts: list[str] = []
    reader = threading.Thread(target=lambda: err_parts.append(proc.stderr.read()))  # type: ignore[union-attr]
    reader.start()
    out = proc.stdout.read()
    reader.join()
    proc.stdout.close()
    proc.stderr.close()
    return out, "".join(err_parts)


def run_bench(options: BenchOptions) -> dict[str, Any]:
    """One benchmark run; the report as a JSON-ready dict (see `SCHEMA`)."""
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        root = options.workdir or Path(tmp)
        paths = make_images(root / "images", options.count, options.size, kinds=options.kinds)
        manifest = write_manifest(paths, root / "manifest.jsonl")
        journal = Path(tmp) / "bench.journal"
        if options.base_url is not None:
            return _measure(options, manifest, journal, options.base_url, None)
        from ingest.bench.emulator import EmulatorProcess

        with EmulatorProcess.start(
            lifetime=options.lifetime_s, faults=options.faults, fast=options.fast_emulator
        ) as emulator:
            return _measure(options, manifest, journal, emulator.base_url, emulator)


def api_base(base_url: str, provider: str) -> str:
    """`base_url` with the path of the provider's real base URL (Scenario's ``/v1``)."""
    from ingest.providers.settings import DEFAULT_PROVIDERS

    return base_url + urlsplit(DEFAULT_PROVIDERS[provider].base_url).path.rstrip("/")


def run_client(
    options: BenchOptions,
    base_url: str,
    manifest: Path,
    journal: Path,
    *,
    placeholder_keys: bool,
    env: dict[str, str] | None = None,
) -> tuple[dict[str, Any], ProcessUsage]:
    """Run the measured engine client (`ingest.bench.client`) to its end: its report, its usage.

    `placeholder_keys`: send a placeholder for every unset key (the emulator and
    the signer take any key). `RuntimeError` when the client fails.
    """
    config = {
        "provider": options.provider,
        "base_url": base_url,
        "settings": dict(options.settings),
        "manifest": str(manifest),
        "journal": str(journal),
        "put_concurrency": options.put_concurrency,
        "api_concurrency": options.api_concurrency,
        "api_rate": options.api_rate,
        "put_transport": options.put_transport,
        "emulator": placeholder_keys,
    }
    out, err, usage = run_measured(
        [sys.executable, "-m", "ingest.bench.client", orjson.dumps(config).decode()], env=env
    )
    if usage.status != 0:
        raise RuntimeError(f"the benchmark client failed ({usage.status}): {err.strip()[-800:]}")
    return orjson.loads(out), usage


def _measure(
    options: BenchOptions, manifest: Path, journal: Path, base_url: str, emulator: Any
) -> dict[str, Any]:
    if emulator is not None:
        base_url = api_base(base_url, options.provider)  # the provider's path under the emulator
    emu_cpu0 = emulator.cpu_s() if emulator else 0.0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    client, usage = run_client(
        options, base_url, manifest, journal, placeholder_keys=emulator is not None
    )
    emu_cpu = emulator.cpu_s() - emu_cpu0 if emulator else None
    stats = emulator.stats() if emulator else None
    return build_report(
        options,
        base_url if emulator is None else None,
        client,
        usage,
        emu_cpu,
        stats,
        load_1m_before=load,
    )


def _default_put_transport() -> str:
    from ingest.config import RunSettings

    return RunSettings().put_transport


def _ms(q: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(v * 1000, 3) for k, v in q.items()}


def build_report(
    options: BenchOptions,
    endpoint: str | None,
    client: dict[str, Any],
    usage: ProcessUsage,
    emulator_cpu_s: float | None,
    emulator_stats: dict[str, Any] | None,
    *,
    load_1m_before: float | None = None,
) -> dict[str, Any]:
    """The report of one run, verdict included (`load_1m_before`: the machine's 1-minute
    load average as the client started, None where unknown)."""
    done = client["done"]
    elapsed = max(client["elapsed_s"], 1e-9)
    per_file = max(done, 1)
    throttled = client["api_429"] + client["put_429"]
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "config": {
            "provider": options.provider,
            "endpoint": endpoint or "emulator",
            "files": options.count,
            "file_size": options.size,
            "put_concurrency": options.put_concurrency,
            "api_concurrency": options.api_concurrency,
            "api_rate": options.api_rate,
            "put_transport": options.put_transport or _default_put_transport(),
            "url_lifetime_s": options.lifetime_s if endpoint is None else None,
            "faults": options.faults if endpoint is None else None,
        },
        "result": {
            "done": done,
            "failed": client["failed"],
            "rejected": client["rejected"],
            "stop_reason": client["stop_reason"],
            "stop_message": client.get("stop_message"),
            "elapsed_s": round(elapsed, 3),
            "files_per_s": round(done / elapsed, 1),
            "mib_per_s": round(client["bytes"] / elapsed / 2**20, 2),
        },
        "latency_ms": {
            "api": _ms(client["api_latency_s"]),
            "put": _ms(client["put_latency_s"]),
        },
        "lease": {
            "granted_s_p50": client["granted_s"]["p50"],
            "lifetime_s": _lifetime(options, endpoint, client["granted_s"]["p50"]),
            "queued_s": client["queued_s"],
            "queued_share_of_lifetime": client["queued_share"],
            "resigned": client["resigns"],
            "resigned_share": round(client["resigns"] / per_file, 4),
        },
        "throttling": {
            "api_429": client["api_429"],
            "put_429": client["put_429"],
            "per_1000_files": round(throttled * 1000 / per_file, 2),
            "retries": client["retries"],
        },
        "client": {
            "process_wall_s": round(usage.wall_s, 3),
            "cpu_s": round(usage.cpu_s, 3),
            "cpu_ms_per_file": round(usage.cpu_s * 1000 / per_file, 3),
            "loop_busy": round(client["loop_cpu_s"] / elapsed, 3),
            "peak_rss_mib": round(usage.peak_rss_bytes / 2**20, 1),
        },
        "emulator": None,
        "load_1m_before": None if load_1m_before is None else round(load_1m_before, 2),
    }
    if emulator_cpu_s is not None:
        report["emulator"] = {
            "fast_path": options.fast_emulator,
            "cpu_s": round(emulator_cpu_s, 3),
            "cpu_cores": round(emulator_cpu_s / max(usage.wall_s, 1e-9), 3),
            "expired_puts": (emulator_stats or {}).get("expired"),
            "assets_issued": (emulator_stats or {}).get("assets_issued"),
        }
    not_done = unfinished(options.count, client)
    if not_done is None:
        bottleneck, reason = verdict(report, cores=os.cpu_count() or 1)
        report["verdict"] = {"bottleneck": bottleneck, "reason": reason}
    else:
        report["verdict"] = {"bottleneck": None, "reason": not_done}
    return report


def unfinished(count: int, client: dict[str, Any]) -> str | None:
    """Why a run has no verdict (it stopped, or not every file is done); None if it has one."""
    stopped = client["stop_reason"]
    if client["done"] == count and not stopped:
        return None
    how = "it stopped early" if stopped else f"{count - client['done']} not done"
    return (
        f"the run did not finish ({client['done']} of {count} files done, {how}); "
        "a bottleneck is named only for a run that uploads every file"
    )


def _lifetime(options: BenchOptions, endpoint: str | None, granted: float | None) -> float | None:
    """The URL lifetime the run was given: the emulator's, else what the endpoint granted.

    A lease's `granted_s` is a conservative reading (signing times are whole
    seconds, and the round trip is subtracted), so it sits up to ~2 s under
    the lifetime the emulator was told to give; that one is reported.
    """
    if endpoint is not None:
        return granted
    from ingest.sim.faults import FaultPlan

    override = FaultPlan.parse(options.faults).lifetime
    return float(max(1, math.ceil(options.lifetime_s if override is None else override)))


def render(report: dict[str, Any]) -> str:
    """The report for people: a few aligned lines and the verdict."""
    cfg, res, lat = report["config"], report["result"], report["latency_ms"]
    lease, thr, cli, emu = (
        report["lease"],
        report["throttling"],
        report["client"],
        report["emulator"],
    )

    def ms(q: dict[str, float | None]) -> str:
        return "n/a" if q["p50"] is None else f"p50 {q['p50']:.1f} ms, p99 {q['p99']:.1f} ms"

    queued = lease["queued_s"]
    share = lease["queued_share_of_lifetime"]
    lines = [
        f"ingest bench: {cfg['files']} × {_size(cfg['file_size'])} via {cfg['provider']} "
        f"({cfg['endpoint']}, {cfg.get('put_transport', 'aiohttp')} PUTs)",
        f"  done       {res['done']} (failed {res['failed']}, rejected {res['rejected']})"
        f" in {res['elapsed_s']:.2f} s",
        f"  throughput {res['files_per_s']:.1f} files/s, {res['mib_per_s']:.1f} MiB/s "
        "in the transfer phase (start-up not counted)",
        f"  API        {ms(lat['api'])}",
        f"  PUT        {ms(lat['put'])}",
        "  queued     "
        + (
            "n/a"
            if queued["p50"] is None
            else f"p50 {queued['p50']:.2f} s, p99 {queued['p99']:.2f} s of a "
            f"{lease['lifetime_s']:.0f} s URL lifetime (p99 {share['p99']:.0%})"
        ),
        f"  re-signed  {lease['resigned']} ({lease['resigned_share']:.1%} of files)",
        f"  429s       {thr['per_1000_files']:.1f} per 1,000 files"
        f" (API {thr['api_429']}, PUT {thr['put_429']}; retries {thr['retries']})",
        f"  client     {cli['cpu_ms_per_file']:.3f} ms CPU per file, peak RSS "
        f"{cli['peak_rss_mib']:.0f} MiB, event loop busy {cli['loop_busy']:.0%}",
    ]
    if emu is not None:
        lines.append(
            f"  emulator   {emu['cpu_cores']:.2f} cores of CPU "
            f"({'fast path' if emu['fast_path'] else 'stock storage route'})"
        )
    if report.get("reference"):
        from ingest.bench.reference import render_reference

        lines += render_reference(report["reference"])  # with its own load note
    elif (report.get("load_1m_before") or 0) > (cores := os.cpu_count() or 1):
        lines.append(  # as --reference says it: a loaded machine's latencies are its queues
            f"  note       the load average was {report['load_1m_before']:.1f} on {cores} cores "
            "before the run: other work shared the machine, so figures move between runs"
        )
    if res["stop_reason"]:
        lines.append(f"  stopped    {res['stop_reason']}: {res.get('stop_message') or ''}")
    verdict_ = report["verdict"]
    if verdict_["bottleneck"] is None:
        lines.append(f"verdict: none — {verdict_['reason']}")
    else:
        lines.append(f"verdict: bottleneck is {verdict_['bottleneck']} — {verdict_['reason']}")
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"
