"""Shared plumbing of the benchmarks: datasets, the emulator, measured processes, tables.

Every measured client runs as its own process; its wall time, CPU time
(user + system, start-up included) and peak RSS come from `os.wait4`, and
the emulator's CPU over the same interval from ``/proc``. Clients of one
round run one after another in a rotating order, rounds are repeated, and
medians are reported with ratios against *bare* from the same rounds.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.bench.dataset import make_images, write_manifest  # noqa: E402
from ingest.bench.emulator import EmulatorProcess  # noqa: E402
from ingest.bench.procs import ensure_tool  # noqa: E402
from ingest.bench.runner import run_measured  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DATA = Path(os.environ.get("INGEST_BENCH_DATA", tempfile.gettempdir())) / "ingest-bench-data"
KEY = "sk-bench"


def bare_reader_note(clients: Sequence[str]) -> str | None:
    """A note when bare (or put) runs without aiofiles: it then reads through the loop's
    default executor, not with the aiofiles body benchmarks/README.md describes (the
    session 8 results were recorded so: no aiofiles among their tools)."""
    if not {"bare", "put"} & set(clients) or importlib.util.find_spec("aiofiles") is not None:
        return None
    return (
        "bare read its files through the loop's executor: aiofiles is not installed in this "
        "Python (pip install 'aiofiles>=23.2', the bench extra, for the aiofiles reader)"
    )


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def dataset(count: int, size: int) -> tuple[list[Path], Path, Path]:
    """Images (made once, then reused), a JSON lines manifest and a list of paths."""
    root = DATA / f"{count}x{size}-v2"  # v2: files end with their end marker (IEND, EOI)
    images = root / "images"
    done = root / ".complete"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        paths = make_images(images, count, size)
        write_manifest(paths, root / "manifest.jsonl")
        (root / "paths.txt").write_text("".join(f"{p}\n" for p in paths))
        done.touch()
    paths = [Path(line) for line in (root / "paths.txt").read_text().splitlines()]
    # Read every file once so that no client pays for a cold page cache: the first
    # client of the first round used to (40 × 16 MiB: 1.8-1.9 s instead of 0.9 s).
    for path in paths:
        with path.open("rb") as fh:
            while fh.read(1 << 20):
                pass
    return paths, root / "manifest.jsonl", root / "paths.txt"


@dataclass
class Sample:
    wall_s: float
    cpu_s: float
    rss_mib: float
    emulator_cpu_s: float
    ok: bool
    extra: dict[str, Any] = field(default_factory=dict)


def measure(
    args: Sequence[str],
    emulator: EmulatorProcess | None,
    *,
    env: dict[str, str] | None = None,
    parse: Callable[[str], dict[str, Any]] | None = None,
) -> Sample:
    """Run one client process to its end and measure it (and the emulator meanwhile)."""
    before = emulator.cpu_s() if emulator else 0.0
    out, err, usage = run_measured(list(args), env=env)
    emu = (emulator.cpu_s() - before) if emulator else 0.0
    ok = usage.status == 0
    if not ok:
        print(
            f"  ! {Path(args[1]).name if len(args) > 1 else args[0]} exited {usage.status}: "
            f"{err.strip()[-400:]}",
            file=sys.stderr,
        )
    extra = parse(out) if (parse and ok) else {}
    return Sample(usage.wall_s, usage.cpu_s, usage.peak_rss_bytes / 2**20, emu, ok, extra)


def env_with_key() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["NOVITA_API_KEY"] = KEY
    return env


def ingest_run(manifest: Path, base_url: str, journal: Path, *extra: str) -> list[str]:
    for leftover in journal.parent.glob(journal.name + "*"):
        leftover.unlink()
    return [
        sys.executable, "-m", "ingest", "run", str(manifest), "--provider", "novita",
        "--base-url", base_url, "--journal", str(journal), "--json", *extra,
    ]  # fmt: skip


def ingest_summary(out: str) -> dict[str, Any]:
    for line in reversed(out.splitlines()):
        if line.startswith("{") and '"event":"summary"' in line.replace(" ", ""):
            return dict(json.loads(line))
    return {}


def bare(paths_file: Path, base_url: str) -> list[str]:
    return [sys.executable, "-m", "ingest.bench.bare", "--base-url", base_url,
            "--key", KEY, str(paths_file)]  # fmt: skip


def presign(base_url: str, paths: Sequence[Path]) -> list[str]:
    """Fresh upload URLs for `paths` (acquired outside any measurement)."""
    import aiohttp

    exts = {".png": "png", ".jpg": "jpeg", ".webp": "webp"}

    async def main() -> list[str]:
        urls: list[str] = [""] * len(paths)
        it = iter(enumerate(paths))
        async with aiohttp.ClientSession(
            base_url=base_url + "/", headers={"Authorization": f"Bearer {KEY}"}
        ) as session:

            async def worker() -> None:
                for index, path in it:
                    async with session.post(
                        "v3/assets/training_dataset", json={"file_extension": exts[path.suffix]}
                    ) as resp:
                        urls[index] = (await resp.json())["upload_url"]

            await asyncio.gather(*(worker() for _ in range(16)))
        return urls

    return asyncio.run(main())


CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp"}


def curl_config(paths: Sequence[Path], urls: Sequence[str], config: Path) -> Path:
    """One transfer per file; `next` keeps each transfer's headers its own."""
    groups = [
        f'url = "{url}"\nupload-file = "{path}"\noutput = "/dev/null"\n'
        f'header = "Content-Type: {CONTENT_TYPES[path.suffix]}"\nheader = "Expect:"\n'
        for path, url in zip(paths, urls, strict=True)
    ]
    config.write_text("next\n".join(groups))
    return config


def rclone_env() -> dict[str, str]:
    """rclone's S3 backend refuses a CA bundle variable on a plain-http endpoint."""
    return {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}


def have(tool: str, package: str | None = None) -> bool:
    """Whether `tool` is on PATH; tries apt-get (as root) once if it is not."""
    return ensure_tool(tool, package) is not None


def rclone(source_dir: Path, endpoint: str, transfers: int = 32) -> list[str]:
    """rclone's S3 backend at `endpoint`: single PUTs, no HEAD, no listing, no checksums."""
    return [
        "rclone", "copy", str(source_dir), ":s3:rclone-sink/run",
        "--s3-provider", "Other", "--s3-endpoint", endpoint, "--s3-access-key-id", "x",
        "--s3-secret-access-key", "y", "--s3-force-path-style=true", "--s3-no-check-bucket",
        "--s3-no-head", "--s3-disable-checksum", "--s3-upload-cutoff", "5G",
        "--no-check-dest", "--no-traverse", "--ignore-checksum", "--transfers", str(transfers),
        "--checkers", "16", "--config", "/dev/null", "-q",
    ]  # fmt: skip


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(samples: dict[str, list[Sample]], files: int, nbytes: int) -> dict[str, Any]:
    """Medians per client, ratios against bare."""
    out: dict[str, Any] = {}
    for name, runs in samples.items():
        good = [s for s in runs if s.ok]
        if not good:
            out[name] = {"runs": len(runs), "ok": 0}
            continue
        out[name] = {
            "runs": len(runs),
            "ok": len(good),
            "files_per_s": median([files / s.wall_s for s in good]),
            "mib_per_s": median([nbytes / 2**20 / s.wall_s for s in good]),
            "cpu_ms_per_file": median([s.cpu_s * 1000 / files for s in good]),
            "peak_rss_mib": max(s.rss_mib for s in good),
            "emulator_cores": median([s.emulator_cpu_s / s.wall_s for s in good]),
            "wall_s": [round(s.wall_s, 3) for s in good],
        }
    return add_ratios(out)


def add_ratios(rows: dict[str, Any]) -> dict[str, Any]:
    """Each good row's files/s and CPU per file against the row "bare" of the same rounds."""
    base = rows.get("bare")
    if base and base.get("ok"):
        for row in rows.values():
            if row.get("ok"):
                row["vs_bare"] = {
                    "files_per_s": row["files_per_s"] / base["files_per_s"],
                    "cpu_per_file": row["cpu_ms_per_file"] / base["cpu_ms_per_file"],
                }
    return rows


def ratio(vs: dict[str, float], key: str) -> str:
    """A ratio against bare for a table, or a dash when bare was not run (or failed)."""
    return f"{vs[key]:.2f}" if key in vs else "—"


def table(rows: dict[str, Any], *, mib: bool = False) -> str:
    head = "| client | files/s | MiB/s | CPU ms/file | peak RSS MiB | emulator cores | × bare files/s | × bare CPU/file |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in rows.items():
        if not row.get("ok"):
            lines.append(f"| {name} | failed | | | | | | |")
            continue
        vs = row.get("vs_bare", {})
        lines.append(
            f"| {name} | {row['files_per_s']:,.0f} | {row['mib_per_s']:,.1f} | "
            f"{row['cpu_ms_per_file']:.3f} | {row['peak_rss_mib']:.0f} | "
            f"{row['emulator_cores']:.2f} | {ratio(vs, 'files_per_s')} | "
            f"{ratio(vs, 'cpu_per_file')} |"
        )
    return "\n".join(lines)


SAVE_HELP = "write the figures to benchmarks/results/ (the tracked, recorded ones); else to $TMPDIR"


def record(name: str, payload: dict[str, Any], keep: bool) -> str:
    """Write a result: with `keep` (``--save``) to the tracked ``benchmarks/results/NAME.json``,
    else to ``$TMPDIR/ingest-NAME.json`` (the recorded figures stay until --save replaces them);
    the line to print."""
    if keep:
        return f"saved {save(name, payload)}"
    scratch = save(name, payload, Path(tempfile.gettempdir()), prefix="ingest-")
    return f"written to {scratch} (--save: to benchmarks/results/)"


def save(name: str, payload: dict[str, Any], folder: Path = RESULTS, prefix: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}{name}.json"
    payload = {"benchmark": name, "when": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
               **payload}  # fmt: skip
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
