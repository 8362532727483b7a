"""Throughput against a reference that runs free: nginx as the PUT sink, a minimal signer.

One command prints the tables and writes the figures to ``$TMPDIR/ingest-reference-*.json``
(``--save``: to the tracked ``benchmarks/results/reference-*.json``, the recorded figures):

    python benchmarks/reference.py                     # 2,000 and 10,000 × 64 KiB, 40 × 16 MiB
    python benchmarks/reference.py --workload small --clients bare,ingest --rounds 3

Neither the sink nor the signer shares a bottleneck with the clients: one
nginx worker stores every PUT into ``/dev/shm`` (`ingest.bench.sink`), and a
small aiohttp process answers the provider's acquire call with one HMAC
(`ingest.bench.signer`). Both report their CPU over every run, in cores of
the client's wall time, so a reader sees that the client was the limit.

Clients, each its own process, in a rotating order per round, medians of
the rounds, ratios against *bare* (sign+PUT) from the same rounds:

- ``bare``: `ingest.bench.bare`, Novita's acquire POST then the PUT, nothing else;
- ``put``: the same loop, PUT only, to URLs signed before its clock starts;
- ``curl``: ``curl --parallel`` (32), PUT only, URLs signed beforehand;
- ``rclone``: Debian's rclone, S3 backend (``--s3-provider Other``) at the
  sink, 64 transfers, single PUTs, no HEAD, no listing, no checksums;
- ``ingest``: ``ingest run --provider novita`` from the installed package
  (the ``ingest`` script beside this Python, ``--ingest PATH`` another's, or
  ``--readme-venv DIR``: a venv made there by the install part of the README's
  first set-up command, as a user or a checker gets it), journaling to disk;
- ``ingest-asyncio``: the same with uvloop hidden (as a set-up without it
  runs), only when uvloop is installed;
- ``ingest-aiohttp``: ``ingest run`` with ``--put-transport aiohttp`` (PUTs by
  aiohttp instead of the lean transport; not in the default set).

Per run: wall time, CPU (user + system of the client's process tree, start-up
included), peak RSS, the client's own transfer-phase time where it reports
one (bare's ``elapsed_s``, ingest's summary), the sink's and the signer's
CPU, and the load average before the run. Every run is checked: the sink
must hold one object per file. nginx, curl and rclone are installed with
apt-get when missing and run as root, else skipped with a note.

The page cache is set before every run, so no client inherits another's:
rclone's local backend drops the pages of each file it has read
(``POSIX_FADV_DONTNEED``, rclone ``backend/local/fadvise_unix.go``), and
whichever client ran next read its files from disk (2,000 files: ingest
1.13-1.18 s after rclone, 0.82-0.86 s after itself). By default every run
starts with the dataset in memory (``warm``, each file read once beforehand);
``--cold`` drops the dataset's pages before every run instead, as a large
upload meets its files (the programs' own files stay cached).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness import (
    ROOT,
    SAVE_HELP,
    add_ratios,
    bare_reader_note,
    curl_config,
    dataset,
    ingest_summary,
    machine,
    median,
    presign,
    ratio,
    rclone,
    rclone_env,
    record,
)

from ingest.bench.procs import ensure_tool
from ingest.bench.runner import run_measured
from ingest.bench.signer import SignerProcess
from ingest.bench.sink import NGINX_PACKAGE, NginxSink

KEY = "sk-reference"
WORKLOADS = {
    "small": (2000, 64 * 1024),
    "small10k": (10_000, 64 * 1024),
    "large": (40, 16 * 2**20),
}
LABELS = {
    "bare": "bare sign+PUT",
    "put": "bare PUT only",
    "curl": "curl --parallel (PUT only)",
    "rclone": "rclone s3 (PUT only)",
    "ingest": "ingest run",
    "ingest-asyncio": "ingest run (asyncio)",
    "ingest-aiohttp": "ingest run (aiohttp PUTs)",
}
UVLOOP = importlib.util.find_spec("uvloop") is not None
_HIDE_UVLOOP = (
    "import sys; sys.modules['uvloop'] = None; from ingest.cli.main import entry; entry()"
)


@dataclass
class Run:
    """One measured client process."""

    round: int
    wall_s: float
    cpu_s: float
    rss_mib: float
    sink_cpu_s: float
    signer_cpu_s: float
    load_1m: float
    transfer_s: float | None
    ok: bool
    note: str = ""


def ingest_command(script: str | None = None) -> list[str]:
    """`script` (another install's ``bin/ingest``), else the one beside this Python."""
    found = Path(script) if script else Path(sys.executable).parent / "ingest"
    return [str(found)] if found.exists() else [sys.executable, "-m", "ingest"]


def compile_ingest(script: str | None) -> None:
    """Write the measured install's bytecode once, before any run, as a user's first run
    (or pip, for a wheel) does: with PYTHONDONTWRITEBYTECODE set (it is on these machines)
    an editable install recompiles every ingest module in every run, ~0.3 s of CPU a run
    (a 1-file run: 995 -> 704 ms, medians of 6, load 11), which bare's few imports do
    not pay."""
    python = Path(script).parent / "python" if script else Path(sys.executable)
    code = "import compileall, ingest, os; compileall.compile_dir(os.path.dirname(ingest.__file__), quiet=1)"
    subprocess.run([str(python), "-c", code], check=True)


def readme_install() -> str:
    """The README's first set-up command up to its first ``ingest``: what a user installs."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"^```bash\n(.*)$", text, re.MULTILINE)
    if found is None or " && ingest " not in found.group(1):
        raise SystemExit("reference: README.md's first bash block has no '... && ingest ...' line")
    return found.group(1).split(" && ingest ", 1)[0]


def make_readme_venv(folder: Path) -> str:
    """Run the README's install in the repository with its ``.venv`` named `folder`; the
    ``ingest`` script it installed. Nothing is compiled afterwards: the runs pay what a
    user's runs pay (the environment, PYTHONDONTWRITEBYTECODE included, is this one's)."""
    command = readme_install()
    if ".venv" not in command:
        raise SystemExit(f"reference: the README's install names no .venv: {command}")
    if folder.exists():
        raise SystemExit(f"reference: --readme-venv {folder} exists; remove it or name another")
    command = command.replace(".venv", shlex.quote(str(folder.resolve())))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    print(f"reference: {command}", file=sys.stderr)
    subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return str(folder.resolve() / "bin" / "ingest")


def hidden_uvloop(script: str | None) -> list[str]:
    """`ingest` of that install with uvloop hidden: its Python, which imports no uvloop."""
    python = Path(script).parent / "python" if script else Path(sys.executable)
    return [str(python), "-c", _HIDE_UVLOOP]


def set_cache(paths: Sequence[Path], *, cold: bool) -> None:
    """The dataset's pages in the page cache (read once), or dropped from it (`cold`)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            if cold:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            else:
                while os.read(fd, 1 << 20):
                    pass
        finally:
            os.close(fd)


class Bench:
    """One workload against one sink and one signer."""

    def __init__(
        self,
        sink: NginxSink,
        signer: SignerProcess,
        tmp: Path,
        script: str | None = None,
        *,
        cold: bool = False,
    ) -> None:
        self.sink, self.signer, self.tmp, self.script = sink, signer, tmp, script
        self.cold = cold

    def command(
        self, client: str, paths: Sequence[Path], manifest: Path, paths_file: Path
    ) -> tuple[list[str], dict[str, str] | None]:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        if client == "bare":
            return [sys.executable, "-m", "ingest.bench.bare", "--base-url",
                    self.signer.base_url, "--key", KEY, str(paths_file)], env  # fmt: skip
        if client in ("put", "curl"):
            urls = presign(self.signer.base_url, paths)
            if client == "put":
                listing = self.tmp / "urls.jsonl"
                listing.write_text(
                    "".join(
                        json.dumps({"path": str(p), "url": u}) + "\n"
                        for p, u in zip(paths, urls, strict=True)
                    )
                )
                return [sys.executable, "-m", "ingest.bench.bare", "--urls", str(listing)], env
            config = curl_config(paths, urls, self.tmp / "curl.cfg")
            return ["curl", "--parallel", "--parallel-max", "32", "--silent", "--show-error",
                    "--fail", "--config", str(config)], env  # fmt: skip
        if client == "rclone":
            return rclone(paths[0].parent, self.sink.base_url, transfers=64), rclone_env()
        journal = self.tmp / "run.journal"
        for leftover in self.tmp.glob("run.journal*"):
            leftover.unlink()
        env["NOVITA_API_KEY"] = KEY
        asyncio = client == "ingest-asyncio"
        head = hidden_uvloop(self.script) if asyncio else ingest_command(self.script)
        put = ["--put-transport", "aiohttp"] if client == "ingest-aiohttp" else []
        return [*head, "run", str(manifest), "--provider", "novita", "--base-url",
                self.signer.base_url, "--journal", str(journal), "--json", *put], env  # fmt: skip

    def measure(
        self, client: str, round_: int, paths: Sequence[Path], manifest: Path, paths_file: Path
    ) -> Run:
        self.sink.clear()
        args, env = self.command(client, paths, manifest, paths_file)
        set_cache(paths, cold=self.cold)
        load = os.getloadavg()[0]
        sink0, signer0 = self.sink.cpu_s(), self.signer.cpu_s()
        out, err, usage = run_measured(args, env=env)
        sink_cpu, signer_cpu = self.sink.cpu_s() - sink0, self.signer.cpu_s() - signer0
        stored = self.sink.stored()
        transfer: float | None = None
        note = ""
        ok = usage.status == 0 and stored == len(paths)
        if client in ("bare", "put") and usage.status == 0:
            transfer = float(json.loads(out)["elapsed_s"])
        elif client.startswith("ingest") and usage.status == 0:
            summary = ingest_summary(out)
            transfer = float(summary.get("this_run", {}).get("elapsed_s") or 0) or None
            ok = ok and summary.get("done") == len(paths)
        if not ok:
            note = f"exit {usage.status}, {stored} stored: {err.strip()[-300:]}"
            print(f"  ! {client}: {note}", file=sys.stderr)
        return Run(round_, usage.wall_s, usage.cpu_s, usage.peak_rss_bytes / 2**20, sink_cpu,
                   signer_cpu, load, transfer, ok, note)  # fmt: skip


def summarize(runs: dict[str, list[Run]], files: int, nbytes: int) -> dict[str, Any]:
    """Medians per client, ratios against bare from the same rounds."""
    rows: dict[str, Any] = {}
    for client, samples in runs.items():
        good = [r for r in samples if r.ok]
        row: dict[str, Any] = {"label": LABELS[client], "runs": len(samples), "ok": len(good)}
        if good:
            phases = [r.transfer_s for r in good if r.transfer_s]
            row |= {
                "files_per_s": median([files / r.wall_s for r in good]),
                "mib_per_s": median([nbytes / 2**20 / r.wall_s for r in good]),
                "cpu_ms_per_file": median([r.cpu_s * 1000 / files for r in good]),
                "peak_rss_mib": max(r.rss_mib for r in good),
                "transfer_files_per_s": median([files / t for t in phases]) if phases else None,
                "sink_cores": median([r.sink_cpu_s / r.wall_s for r in good]),
                "signer_cores": median([r.signer_cpu_s / r.wall_s for r in good]),
                "load_1m": median([r.load_1m for r in good]),
            }
        rows[client] = row
    return add_ratios(rows)


def per_round(runs: dict[str, list[Run]], client: str, other: str) -> list[float]:
    """`client`'s files/s over `other`'s, round by round (both ok in that round)."""
    theirs = {r.round: r.wall_s for r in runs.get(other, []) if r.ok}
    return [theirs[r.round] / r.wall_s for r in runs.get(client, []) if r.ok and r.round in theirs]


def table(rows: dict[str, Any]) -> str:
    lines = [
        "| client | files/s | MiB/s | CPU ms/file | peak RSS MiB | transfer-phase files/s "
        "| sink cores | signer cores | load 1m | × bare files/s | × bare CPU/file |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows.values():
        if not row.get("ok"):
            lines.append(f"| {row['label']} | failed | | | | | | | | | |")
            continue
        vs = row.get("vs_bare", {})
        phase = row["transfer_files_per_s"]
        lines.append(
            f"| {row['label']} | {row['files_per_s']:,.0f} | {row['mib_per_s']:,.1f} | "
            f"{row['cpu_ms_per_file']:.3f} | {row['peak_rss_mib']:.0f} | "
            f"{'—' if phase is None else f'{phase:,.0f}'} | {row['sink_cores']:.2f} | "
            f"{row['signer_cores']:.2f} | {row['load_1m']:.2f} | "
            f"{ratio(vs, 'files_per_s')} | {ratio(vs, 'cpu_per_file')} |"
        )
    return "\n".join(lines)


def tool_versions() -> dict[str, str]:
    versions = {}
    for name, args in {"nginx": ["nginx", "-v"], "curl": ["curl", "--version"],
                       "rclone": ["rclone", "version"]}.items():  # fmt: skip
        with contextlib.suppress(OSError):
            done = subprocess.run(args, capture_output=True, text=True, check=False)
            versions[name] = (done.stdout or done.stderr).strip().splitlines()[0]
    for module in ("aiohttp", "uvloop", "aiofiles"):
        with contextlib.suppress(ImportError, AttributeError):
            versions[module] = str(__import__(module).__version__)
    return versions


def run_workload(
    name: str,
    clients: Sequence[str],
    rounds: int,
    sink: NginxSink,
    signer: SignerProcess,
    script: str | None = None,
    count: int | None = None,
    keep: bool = False,
    install: str = "",
    cold: bool = False,
) -> dict[str, Any]:
    size = WORKLOADS[name][1]
    count = count or WORKLOADS[name][0]
    saved_as = f"reference-{name}" if count == WORKLOADS[name][0] else f"reference-{name}-{count}"
    saved_as += "-cold" if cold else ""
    cache = "cold (the dataset's pages dropped before every run)" if cold else "warm"
    paths, manifest, paths_file = dataset(count, size)
    runs: dict[str, list[Run]] = {c: [] for c in clients}
    with tempfile.TemporaryDirectory(prefix="ingest-ref-") as tmp:
        bench = Bench(sink, signer, Path(tmp), script, cold=cold)
        order = list(clients)
        for round_ in range(rounds):
            shift = round_ % len(order)
            turn = order[shift:] + order[:shift]
            # Every other round backwards: a client run right after another tended to measure
            # less CPU (ingest vs ingest-asyncio, 2,000 files at load 11, 3 pairs each way: the
            # second 0.77-1.01x the first, median 0.92, either order): no pair keeps one order.
            for client in turn[::-1] if round_ % 2 else turn:
                run = bench.measure(client, round_ + 1, paths, manifest, paths_file)
                runs[client].append(run)
                print(
                    f"  {name} round {round_ + 1} {LABELS[client]:28s} "
                    f"{count / run.wall_s:9.1f} files/s {run.cpu_s * 1000 / count:7.3f} ms CPU/file "
                    f"{run.rss_mib:5.0f} MiB sink {run.sink_cpu_s / run.wall_s:.2f} "
                    f"signer {run.signer_cpu_s / run.wall_s:.2f} cores load {run.load_1m:.2f}"
                    + ("" if run.ok else "  FAILED"),
                    file=sys.stderr,
                )
    rows = summarize(runs, count, count * size)
    print(f"\n{name}: {count:,} × {size // 1024:,} KiB, medians of {rounds} rounds, {cache}\n")
    print(table(rows))
    rclone = per_round(runs, "ingest", "rclone")
    if rclone:  # the bar "above rclone", by the rounds' own pairs (machine speed moves between)
        rows["ingest"]["vs_rclone_per_round"] = rclone
        print(f"\ningest × rclone files/s per round: {', '.join(f'{r:.2f}' for r in rclone)}"
              f" (median {median(rclone):.2f})")  # fmt: skip
    notes = [
        f"{row['label']}: the {part} used {row[part + '_cores']:.2f} cores: it may have set the pace"
        for row in rows.values()
        if row.get("ok")
        for part in ("sink", "signer")
        if row[part + "_cores"] >= 0.85
    ]
    if (reader := bare_reader_note(clients)) is not None:
        notes.append(reader)
    loads = [r.load_1m for rs in runs.values() for r in rs]
    if loads and max(loads) > (os.cpu_count() or 1):
        notes.append(
            f"the 1-minute load average reached {max(loads):.1f} on {os.cpu_count()} cores: "
            "other work shared the machine; compare ratios within a round, re-run when quiet"
        )
    for note in notes:
        print(f"note: {note}")
    result = {
        "workload": name, "files": count, "file_size": size, "rounds": rounds, "rows": rows,
        "runs": {c: [asdict(r) for r in rs] for c, rs in runs.items()}, "notes": notes,
        "tools": tool_versions(), "machine": machine(), "ingest": ingest_command(script),
        "install": install, "page_cache": "cold" if cold else "warm",
    }  # fmt: skip
    print(record(saved_as, result, keep))
    return result


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the sink and signer are stopped by their PIDs."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--clients",
        default="bare,put,curl,rclone,ingest,ingest-asyncio",
        help="comma-separated, from: " + ", ".join(LABELS),
    )
    parser.add_argument(
        "--count", type=int, help="files per workload instead of its own (results: *-COUNT.json)"
    )
    parser.add_argument(
        "--ingest",
        metavar="PATH",
        help="the ingest script to measure (another venv's bin/ingest; default: this one's)",
    )
    parser.add_argument(
        "--readme-venv",
        metavar="DIR",
        type=Path,
        help="make a venv at DIR with the README's first set-up command (its install part) "
        "and measure its ingest as installed, bytecode as pip wrote it",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="drop the dataset's pages from the page cache before every run (default: every "
        "run starts with them cached); results: *-cold.json",
    )
    parser.add_argument(
        "--save",
        action="store_true",
        help=SAVE_HELP,
    )
    args = parser.parse_args()
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = [c for c in clients if c not in LABELS]
    if unknown:
        parser.error(f"unknown clients: {', '.join(unknown)}")
    if "ingest-asyncio" in clients and not UVLOOP:
        clients.remove("ingest-asyncio")  # `ingest run` itself runs on asyncio's loop here
        print("note: uvloop is not installed: 'ingest run' is the asyncio run", file=sys.stderr)
    for client, tool, package in (("curl", "curl", None), ("rclone", "rclone", None)):
        if client in clients and ensure_tool(tool, package) is None:
            clients.remove(client)
            print(f"note: {tool} is not available: skipped", file=sys.stderr)
    if ensure_tool("nginx", NGINX_PACKAGE) is None:
        print(f"reference: nginx is needed (apt-get install {NGINX_PACKAGE})", file=sys.stderr)
        return 2
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    if args.readme_venv is not None:
        if args.ingest:
            parser.error("--ingest and --readme-venv name two installs: give one")
        args.ingest = make_readme_venv(args.readme_venv)
        install = readme_install().replace(".venv", str(args.readme_venv))
    else:
        compile_ingest(args.ingest)
        install = "as found, then its bytecode compiled (compile_ingest)"
    with (
        terminate_cleanly(),
        NginxSink.start() as sink,
        SignerProcess.start(sink.base_url) as signer,
    ):
        print(
            f"sink {sink.base_url} (nginx, {sink.root}), signer {signer.base_url}", file=sys.stderr
        )
        for name in names:
            run_workload(
                name, clients, args.rounds, sink, signer, args.ingest, args.count, args.save,
                install, args.cold,
            )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
