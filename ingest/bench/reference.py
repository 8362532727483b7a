"""`ingest bench --reference`: the engine beside the free-running reference, and its share.

Owns one benchmark run against the reference instead of the emulator: an
nginx PUT sink (`ingest.bench.sink`), the minimal signer speaking the
provider's API (`ingest.bench.signer`), and in each round, in alternating
order, the bare loop of the same provider (`ingest.bench.bare`, the
ceiling) and the engine (`ingest.bench.client`), each its own process,
with the same files and the same concurrency.

How it works: both clients are measured from outside (`run_measured`:
whole-process wall time, CPU and peak RSS, start-up included) and report
their own transfer-phase time; the sink's and the signer's CPU is read
over each run, so the report shows whether either of them, rather than
the client, could have set the pace. The engine's report is the usual one
(`runner.build_report`) of its median round, with a ``reference`` section
added: medians of the rounds for both clients and the engine's share of the
ceiling (files/s and CPU per file against bare's). When neither server came
near a core (`SERVERS_FREE`), the verdict is the client, with that share.

Invariants: the sink and the signer stop on every exit path; the clients
never see the user's API keys (placeholders: the signer takes any key);
the sink is emptied between runs, outside any measurement, and must hold one
object per file after each, or the run is reported as failed.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from ingest.bench.bare import sink_objects
from ingest.bench.dataset import make_images, write_manifest
from ingest.bench.runner import (
    BenchOptions,
    ProcessUsage,
    api_base,
    build_report,
    run_client,
    run_measured,
    unfinished,
)

DEFAULT_ROUNDS = 3
SERVERS_FREE = 0.5  # cores: below this, neither the sink nor the signer set the pace


def _client_env() -> dict[str, str]:
    """The environment of both clients, without any API key or secret of the user's."""
    return {
        k: v
        for k, v in os.environ.items()
        if not (k.endswith("_API_KEY") or k.endswith("_API_SECRET"))
    }


def _concurrency(options: BenchOptions) -> tuple[int, int]:
    from ingest.config import RunSettings

    defaults = RunSettings()
    return (
        options.put_concurrency or defaults.put_concurrency,
        options.api_concurrency or defaults.api_concurrency,
    )


def run_reference(options: BenchOptions, rounds: int = DEFAULT_ROUNDS) -> dict[str, Any]:
    """One `ingest bench --reference` run; the report as a JSON-ready dict.

    `RuntimeError` when nginx is missing and cannot be installed, a server
    does not start, or a client fails.
    """
    from ingest.bench.procs import ensure_tool
    from ingest.bench.signer import SignerProcess
    from ingest.bench.sink import NGINX_PACKAGE, NginxSink

    nginx = ensure_tool("nginx", NGINX_PACKAGE)
    if nginx is None:
        raise RuntimeError(
            f"--reference needs nginx (Debian: apt-get install {NGINX_PACKAGE}; "
            "installed automatically when run as root)"
        )
    with tempfile.TemporaryDirectory(prefix="ingest-bench-ref-") as tmp:
        root = options.workdir or Path(tmp)
        paths = make_images(root / "images", options.count, options.size, kinds=options.kinds)
        manifest = write_manifest(paths, root / "manifest.jsonl")
        listing = Path(tmp) / "paths.txt"
        listing.write_text("".join(f"{p}\n" for p in paths))
        with NginxSink.start(nginx) as sink, SignerProcess.start(sink.base_url) as signer:
            base_url = api_base(signer.base_url, options.provider)
            rounds_out = []
            load = os.getloadavg()[0]
            for round_ in range(rounds):
                order = ("bare", "engine") if round_ % 2 == 0 else ("engine", "bare")
                measured = {}
                for who in order:
                    sink.clear()
                    sink0, signer0 = sink.cpu_s(), signer.cpu_s()
                    calls0 = signer.calls()
                    if who == "bare":
                        out, usage = _run_bare(options, base_url, listing)
                    else:
                        out, usage = _run_engine(options, base_url, manifest, Path(tmp))
                    measured[who] = {
                        "out": out,
                        "usage": usage,
                        "sink_cpu_s": sink.cpu_s() - sink0,
                        "signer_cpu_s": signer.cpu_s() - signer0,
                        "stored": sink.stored(),
                        "api_calls": signer.calls() - calls0,
                    }
                rounds_out.append(measured)
    return _report(options, rounds_out, load)


def _run_bare(options: BenchOptions, base_url: str, listing: Path) -> tuple[Any, ProcessUsage]:
    put, api = _concurrency(options)
    args = [
        sys.executable, "-m", "ingest.bench.bare", "--provider", options.provider,
        "--base-url", base_url, "--put-concurrency", str(put), "--api-concurrency", str(api),
        "--scenario-mode", str(options.settings.get("mode") or "assets"), str(listing),
    ]  # fmt: skip
    out, err, usage = run_measured(args, env=_client_env())
    if usage.status != 0:
        raise RuntimeError(f"the bare reference failed ({usage.status}): {err.strip()[-800:]}")
    return orjson.loads(out), usage


def _run_engine(
    options: BenchOptions, base_url: str, manifest: Path, tmp: Path
) -> tuple[Any, ProcessUsage]:
    journal = tmp / "bench.journal"
    for leftover in tmp.glob("bench.journal*"):
        leftover.unlink()
    return run_client(
        options, base_url, manifest, journal, placeholder_keys=True, env=_client_env()
    )


def _figures(runs: list[dict[str, Any]], files: int, elapsed_key: str) -> dict[str, Any]:
    """Medians over rounds of one client's figures."""

    def med(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    return {
        "files_per_s": med([files / r["usage"].wall_s for r in runs]),
        "transfer_files_per_s": med([files / max(r["out"][elapsed_key], 1e-9) for r in runs]),
        "cpu_ms_per_file": med([r["usage"].cpu_s * 1000 / files for r in runs]),
        "peak_rss_mib": round(max(r["usage"].peak_rss_bytes for r in runs) / 2**20, 1),
        "sink_cores": med([r["sink_cpu_s"] / r["usage"].wall_s for r in runs]),
        "signer_cores": med([r["signer_cpu_s"] / r["usage"].wall_s for r in runs]),
        "api_calls_per_file": med([r["api_calls"] / files for r in runs]),
        "wall_s": [round(r["usage"].wall_s, 3) for r in runs],
    }


def _report(options: BenchOptions, rounds: list[dict[str, Any]], load: float) -> dict[str, Any]:
    files = options.count
    engine_runs = [r["engine"] for r in rounds]
    bare_runs = [r["bare"] for r in rounds]
    middle = sorted(engine_runs, key=lambda r: r["usage"].wall_s)[len(engine_runs) // 2]
    report = build_report(
        options, "reference (nginx sink + signer)", middle["out"], middle["usage"], None, None
    )
    engine = _figures(engine_runs, files, "elapsed_s")
    bare = _figures(bare_runs, files, "elapsed_s")
    bare["reader"] = bare_runs[0]["out"].get("reader")
    expected = sink_objects(options.provider, [options.size] * files)
    short = [
        f"{who} round {i + 1}: the sink holds {run['stored']} objects, not {expected}"
        for who, runs in (("engine", engine_runs), ("bare", bare_runs))
        for i, run in enumerate(runs)
        if run["stored"] != expected
    ]
    short += [
        f"bare round {i + 1}: {run['out']['files']} of {files} files done"
        for i, run in enumerate(bare_runs)
        if run["out"]["files"] != files
    ]
    report["reference"] = {
        "rounds": len(rounds),
        "bare": bare,
        "engine": engine,
        "share": {
            "files_per_s": round(engine["files_per_s"] / bare["files_per_s"], 3),
            "transfer_files_per_s": round(
                engine["transfer_files_per_s"] / bare["transfer_files_per_s"], 3
            ),
            "cpu_per_file": round(engine["cpu_ms_per_file"] / bare["cpu_ms_per_file"], 3),
        },
        "problems": short,
        "load_1m_before": round(load, 2),
    }
    servers = max(engine["sink_cores"], engine["signer_cores"])
    if unfinished(files, middle["out"]) is None and servers < SERVERS_FREE:
        share = report["reference"]["share"]
        report["verdict"] = {
            "bottleneck": "client CPU",
            "reason": f"{servers_said(engine)} ran free while the engine ran, so the client "
            f"set the pace: the engine reached {share['files_per_s']:.0%} of the bare loop's "
            f"files/s at {share['cpu_per_file']:.2f}× its CPU per file",
        }
    return report


def servers_said(figures: dict[str, Any]) -> str:
    """The servers' CPU while one client ran, in the words the servers line and the verdict
    share (one figure, one meaning: each the median over rounds of that client's runs)."""
    return (
        f"nginx {figures['sink_cores']:.2f} cores and the signer "
        f"{figures['signer_cores']:.2f} cores"
    )


def render_reference(reference: dict[str, Any]) -> list[str]:
    """The reference's lines of the human report."""
    bare, engine, share = reference["bare"], reference["engine"], reference["share"]
    lines = [
        f"reference  bare {bare['files_per_s']:,.0f} files/s start-up included "
        f"({bare['transfer_files_per_s']:,.0f} in its transfer phase), "
        f"{bare['cpu_ms_per_file']:.3f} ms CPU per file, peak RSS {bare['peak_rss_mib']:.0f} MiB",
        f"  engine   {engine['files_per_s']:,.0f} files/s start-up included "
        f"({engine['transfer_files_per_s']:,.0f} in its transfer phase), "
        f"{engine['cpu_ms_per_file']:.3f} ms CPU per file, "
        f"peak RSS {engine['peak_rss_mib']:.0f} MiB",
        f"  share    {share['files_per_s']:.0%} of the ceiling's files/s start-up included "
        f"({share['transfer_files_per_s']:.0%} in the transfer phase), "
        f"{share['cpu_per_file']:.2f}× its CPU per file (medians of {_rounds(reference['rounds'])})",
        f"  API      {engine['api_calls_per_file']:.2f} calls per file "
        f"(bare {bare['api_calls_per_file']:.2f})",
        f"  servers  while the engine ran: {servers_said(engine)}; while the bare loop ran: "
        f"{servers_said(bare)} (medians)",
    ]
    cores = os.cpu_count() or 1
    if reference["load_1m_before"] > cores:
        lines.append(
            f"  note     the load average was {reference['load_1m_before']:.1f} on {cores} cores "
            "before the run: other work shared the machine, so figures move between runs"
        )
    lines += [f"  problem  {p}" for p in reference["problems"]]
    return lines


def _rounds(n: int) -> str:
    return f"{n} round" if n == 1 else f"{n} rounds"
