"""Scale-out on one machine: 1, 2 and 4 `ingest run --coordinator` workers against one process.

One command prints the tables and writes ``$TMPDIR/ingest-scaleout*.json`` (``--save``: the
tracked ``benchmarks/results/scaleout*.json``):

    python benchmarks/scaleout.py                       # speed, rate and memory
    python benchmarks/scaleout.py --part speed --count 5000 --rounds 3 --workers 0,1,2,4
    python benchmarks/scaleout.py --part rate --rate 200
    python benchmarks/scaleout.py --part memory --items 1000000

Against the free-running reference of `benchmarks/reference.py` (one nginx
worker storing into ``/dev/shm``, the minimal signer answering Novita's
acquire) and a `redis-server` started here on a free loopback port with AOF
on (`ingest.bench.redisserver`), all stopped by their PIDs on every exit path:

- **speed**: in each round, in a rotating order, the single process without a
  coordinator (``0``: `ingest run --journal`, as the reference measures it)
  and N = 1, 2, 4 worker processes of one coordinated run, started together.
  Per run: wall time from the first start to the last exit, the CPU of all
  workers summed (``wait4``, start-up included) per file, redis-server's,
  nginx's and the signer's CPU apart (cores of the wall time), the 1-minute
  load average before it. Every run is checked: the sink holds exactly one
  object per file (no file uploaded twice) and every worker reports the whole
  run done. Medians of the rounds; ratios against the single process of the
  same rounds.
- **rate**: N workers (4) sharing ``--api-rate R``: the signer's arrival
  time of every API call, the largest count in any 1-second window (one
  starting at each arrival) against rate + burst, and the mean rate after the
  burst against R (within -10 % / +2 %).
- **memory**: the run's record in Redis at 10^6 items, written through the
  worker's own `Shipper` (Novita's done records) and planned in chunks of
  200: ``INFO memory``'s ``used_memory`` before and after, and ``MEMORY
  USAGE`` of each key of the run, per item.

The machine is shared: the load average is recorded with every run, and
ratios are only read within a round.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness import SAVE_HELP, dataset, ingest_summary, machine, median, ratio, record
from reference import KEY, ingest_command, terminate_cleanly, tool_versions

from ingest.bench.procs import ensure_tool
from ingest.bench.redisserver import REDIS_PACKAGE, RedisProcess
from ingest.bench.runner import ProcessUsage, run_measured
from ingest.bench.signer import SignerProcess
from ingest.bench.sink import NGINX_PACKAGE, NginxSink

SIZE = 64 * 1024
RUN_NAME = "scaleout"


@dataclass
class Run:
    """One measured configuration: N workers (0: one process without a coordinator)."""

    round: int
    workers: int
    wall_s: float
    cpu_s: float  # all workers summed
    worker_cpu_s: list[float]
    worker_done: list[int]  # items each worker did itself
    peak_rss_mib: float  # the largest worker's
    redis_cpu_s: float
    sink_cpu_s: float
    signer_cpu_s: float
    api_calls: int
    load_1m: float
    ok: bool
    note: str = ""


class Bench:
    """The servers of every run, and one run of N workers."""

    def __init__(
        self, sink: NginxSink, signer: SignerProcess, redis: RedisProcess, tmp: Path
    ) -> None:
        self.sink, self.signer, self.redis, self.tmp = sink, signer, redis, tmp

    def env(self) -> dict[str, str]:
        # Bytecode is cached as an install has it: PYTHONDONTWRITEBYTECODE (set in some
        # sandboxes) made every start compile ingest's modules again (~0.3 s of CPU).
        env = {k: v for k, v in os.environ.items()
               if not k.endswith("_API_KEY") and k != "PYTHONDONTWRITEBYTECODE"}  # fmt: skip
        return env | {"NOVITA_API_KEY": KEY}

    def command(self, manifest: Path, workers: int, extra: Sequence[str]) -> list[str]:
        head = [*ingest_command(), "run", str(manifest), "--provider", "novita",
                "--base-url", self.signer.base_url, "--json", *extra]  # fmt: skip
        if workers == 0:
            journal = self.tmp / "run.journal"
            for leftover in self.tmp.glob("run.journal*"):
                leftover.unlink()
            return [*head, "--journal", str(journal)]
        return [*head, "--coordinator", self.redis.url, "--run-name", RUN_NAME]

    def flush(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis.url)
        try:
            client.flushdb()
        finally:
            client.close()

    def measure(
        self, manifest: Path, files: int, workers: int, round_: int, extra: Sequence[str] = ()
    ) -> Run:
        """Run `workers` processes at once (0: one without a coordinator), outside-in."""
        self.sink.clear()
        self.flush()  # a fresh run each time (outside the measurement)
        args = self.command(manifest, workers, extra)
        env = self.env()
        load = os.getloadavg()[0]
        cpu0 = (self.redis.cpu_s(), self.sink.cpu_s(), self.signer.cpu_s())
        calls0 = self.signer.calls()
        outs: list[tuple[str, str, ProcessUsage]] = []
        lock = threading.Lock()

        def one() -> None:
            measured = run_measured(args, env=env)
            with lock:
                outs.append(measured)

        threads = [threading.Thread(target=one) for _ in range(max(1, workers))]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        redis_cpu, sink_cpu, signer_cpu = (
            now - then
            for now, then in zip(
                (self.redis.cpu_s(), self.sink.cpu_s(), self.signer.cpu_s()), cpu0, strict=True
            )
        )
        stored = self.sink.stored()
        problems = []
        done_by: list[int] = []
        for out, err, usage in outs:
            summary = ingest_summary(out)
            if usage.status != 0 or summary.get("done") != files:
                problems.append(f"exit {usage.status}, {summary.get('done')} done: {err[-300:]}")
            mine = summary.get("this_worker", {}).get("done", summary.get("done", 0))
            done_by.append(int(mine or 0))
        if stored != files:
            problems.append(f"the sink holds {stored} objects, not {files}")
        note = "; ".join(p.strip() for p in problems)
        if note:
            print(f"  ! {workers} workers: {note}", file=sys.stderr)
        return Run(
            round_, workers, wall, sum(u.cpu_s for _, _, u in outs),
            [round(u.cpu_s, 3) for _, _, u in outs], done_by,
            max(u.peak_rss_bytes for _, _, u in outs) / 2**20, redis_cpu, sink_cpu, signer_cpu,
            self.signer.calls() - calls0, load, not problems, note,
        )  # fmt: skip


def label(workers: int) -> str:
    return (
        "1 process, no coordinator" if workers == 0 else f"{workers} worker" + "s" * (workers > 1)
    )


def speed(bench: Bench, count: int, rounds: int, configs: Sequence[int]) -> dict[str, Any]:
    _paths, manifest, _ = dataset(count, SIZE)
    runs: dict[int, list[Run]] = {n: [] for n in configs}
    for round_ in range(rounds):
        shift = round_ % len(configs)
        for workers in [*configs[shift:], *configs[:shift]]:
            run = bench.measure(manifest, count, workers, round_ + 1)
            runs[workers].append(run)
            print(
                f"  round {round_ + 1} {label(workers):26s} {count / run.wall_s:7.1f} files/s "
                f"{run.cpu_s * 1000 / count:6.3f} ms CPU/file (workers {run.worker_cpu_s}) "
                f"redis {run.redis_cpu_s / run.wall_s:.2f} sink {run.sink_cpu_s / run.wall_s:.2f} "
                f"signer {run.signer_cpu_s / run.wall_s:.2f} cores, load {run.load_1m:.2f}"
                + ("" if run.ok else "  FAILED"),
                file=sys.stderr,
            )
    rows = summarize(runs, count)
    print(f"\nspeed: {count:,} × {SIZE // 1024} KiB, Novita flow, medians of {rounds} rounds\n")
    print(speed_table(rows))
    return {"files": count, "file_size": SIZE, "rounds": rounds, "rows": rows,
            "runs": {str(n): [asdict(r) for r in rs] for n, rs in runs.items()}}  # fmt: skip


def summarize(runs: dict[int, list[Run]], files: int) -> dict[str, Any]:
    """Medians per configuration; each round's ratio against the single process of that round."""
    base = {r.round: r for r in runs.get(0, []) if r.ok}
    rows: dict[str, Any] = {}
    for workers, samples in runs.items():
        good = [r for r in samples if r.ok]
        row: dict[str, Any] = {"label": label(workers), "runs": len(samples), "ok": len(good)}
        if good:
            paired = [(r, base[r.round]) for r in good if r.round in base]
            row |= {
                "files_per_s": median([files / r.wall_s for r in good]),
                "cpu_ms_per_file": median([r.cpu_s * 1000 / files for r in good]),
                "peak_rss_mib": max(r.peak_rss_mib for r in good),
                "redis_cores": median([r.redis_cpu_s / r.wall_s for r in good]),
                "redis_cpu_ms_per_file": median([r.redis_cpu_s * 1000 / files for r in good]),
                "sink_cores": median([r.sink_cpu_s / r.wall_s for r in good]),
                "signer_cores": median([r.signer_cpu_s / r.wall_s for r in good]),
                "api_calls_per_file": median([r.api_calls / files for r in good]),
                "load_1m": median([r.load_1m for r in good]),
                "wall_s": [round(r.wall_s, 3) for r in good],
            }
            if paired:
                row["vs_single"] = {
                    "files_per_s": median([b.wall_s / r.wall_s for r, b in paired]),
                    "cpu_per_file": median([r.cpu_s / b.cpu_s for r, b in paired]),
                }
        rows[str(workers)] = row
    return rows


def speed_table(rows: dict[str, Any]) -> str:
    lines = [
        "| run | files/s | CPU ms/file (workers) | × single files/s | × single CPU/file "
        "| redis cores | redis CPU ms/file | sink cores | signer cores | peak RSS MiB | load 1m |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows.values():
        if not row.get("ok"):
            lines.append(f"| {row['label']} | failed | | | | | | | | | |")
            continue
        vs = row.get("vs_single", {})
        lines.append(
            f"| {row['label']} | {row['files_per_s']:,.0f} | {row['cpu_ms_per_file']:.3f} | "
            f"{ratio(vs, 'files_per_s')} | {ratio(vs, 'cpu_per_file')} | "
            f"{row['redis_cores']:.2f} | {row['redis_cpu_ms_per_file']:.3f} | "
            f"{row['sink_cores']:.2f} | {row['signer_cores']:.2f} | "
            f"{row['peak_rss_mib']:.0f} | {row['load_1m']:.2f} |"
        )
    return "\n".join(lines)


def window_counts(arrivals: Sequence[float], width: float = 1.0) -> list[int]:
    """Arrivals in the window of `width` seconds that starts at each arrival."""
    counts, j = [], 0
    for i, start in enumerate(arrivals):
        while j < len(arrivals) and arrivals[j] < start + width:
            j += 1
        counts.append(j - i)
    return counts


def rate(
    bench: Bench, count: int, workers: int, api_rate: float, chunk_lines: int
) -> dict[str, Any]:
    """N workers sharing one --api-rate; the signer's arrival times are the judge."""
    _paths, manifest, _ = dataset(count, SIZE)
    burst = max(1, int(api_rate / 25))  # the worker's default burst (coord.worker)
    start = len(bench.signer.arrivals())
    extra = ["--api-rate", f"{api_rate:g}", "--chunk-lines", str(chunk_lines)]
    run = bench.measure(manifest, count, workers, 1, extra)
    arrivals = sorted(bench.signer.arrivals(start))
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
    counts = window_counts(arrivals)
    most = max(counts, default=0)
    over = sum(1 for n in counts if n > api_rate + burst)
    mean = (len(arrivals) - burst) / span
    held = most <= api_rate + burst and 0.9 * api_rate <= mean <= 1.02 * api_rate
    result = {
        "workers": workers, "files": count, "api_rate": api_rate, "burst": burst,
        "chunk_lines": chunk_lines, "calls": len(arrivals), "max_1s_window": most,
        "bound": api_rate + burst, "windows_over_bound": over,
        "mean_rate": round(mean, 2), "mean_vs_rate": round(mean / api_rate, 4),
        "held": held and run.ok, "by_worker": run.worker_done, "run": asdict(run),
        "arrivals_s": [round(t - arrivals[0], 4) for t in arrivals],
    }  # fmt: skip
    print(
        f"\nrate: {workers} workers sharing --api-rate {api_rate:g} (burst {burst}), {count:,} "
        f"files in chunks of {chunk_lines}: {len(arrivals)} API calls at the signer "
        f"(by worker {run.worker_done}), largest 1-second window {most} (bound "
        f"{api_rate + burst:g}; {over} windows over it), mean {mean:.1f}/s "
        f"({mean / api_rate:.3f}× the rate): " + ("held" if result["held"] else "NOT held")
    )
    return result


def memory(redis_url: str, items: int, chunk_lines: int = 200) -> dict[str, Any]:
    """The run's record at `items` done items, written by the worker's own `Shipper`."""
    import anyio

    return anyio.run(_memory, redis_url, items, chunk_lines)


async def _memory(redis_url: str, items: int, chunk_lines: int) -> dict[str, Any]:
    from ingest.coord.connection import connect
    from ingest.coord.names import RunKeys
    from ingest.coord.plan import Layout, binding, plan_run
    from ingest.coord.record import Record, Shipper
    from ingest.engine.outcomes import ItemDone
    from ingest.providers.base import Landed

    keys = RunKeys("memory")
    chunks = tuple(
        (first, min(first + chunk_lines - 1, items), min(chunk_lines, items - first + 1))
        for first in range(1, items + 1, chunk_lines)
    )
    layout = Layout("0" * 64, items, chunks)
    async with connect(redis_url) as conn:
        client = conn.client
        await client.flushdb()
        before = int((await client.info("memory"))["used_memory"])
        await plan_run(conn, keys, layout, binding(layout, "novita", "http://127.0.0.1:1", {}))
        shipper = Shipper(Record(conn, keys))
        prefix = os.urandom(4).hex()  # remote ids as the signer makes them (Novita's assets_id)
        for line in range(1, items + 1):
            landed = Landed(remote_id=f"{prefix}{line:024x}")
            shipper.item_done(ItemDone(f"item-{line - 1:07d}", line, SIZE, landed, True))
            if line % 4096 == 0:
                await shipper.flush()
        await shipper.flush()
        after = int((await client.info("memory"))["used_memory"])
        usage: dict[str, int] = {}
        for key in sorted(await client.keys(f"ingest:run:{{{keys.name}}}:*")):
            usage[str(key)] = int(await client.memory_usage(key, samples=0) or 0)
        await client.flushdb()
    per_key = {k.rsplit(":", 1)[1]: round(v / items, 2) for k, v in usage.items()}
    result = {
        "items": items, "chunk_lines": chunk_lines,
        "used_memory_delta_bytes": after - before,
        "bytes_per_item_used_memory": round((after - before) / items, 2),
        "bytes_per_item_memory_usage": round(sum(usage.values()) / items, 2),
        "bytes_per_item_by_key": per_key,
    }  # fmt: skip
    print(
        f"\nmemory: {items:,} done items: used_memory +{(after - before) / 2**20:.1f} MiB = "
        f"{result['bytes_per_item_used_memory']} bytes/item; MEMORY USAGE of the run's keys "
        f"{result['bytes_per_item_memory_usage']} bytes/item ({per_key})"
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["speed", "rate", "memory", "all"], default="all")
    parser.add_argument("--count", type=int, default=5000, help="files (speed and rate)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="0,1,2,4", help="configurations (0: no coordinator)")
    parser.add_argument("--rate", type=float, default=200.0, help="the shared --api-rate")
    parser.add_argument("--rate-workers", type=int, default=4)
    parser.add_argument("--rate-chunk-lines", type=int, default=200, help="chunks of the rate run")
    parser.add_argument("--items", type=int, default=1_000_000, help="items (memory)")
    parser.add_argument("--tag", default="", help="results go to scaleout[-TAG].json")
    parser.add_argument("--save", action="store_true", help=SAVE_HELP)
    args = parser.parse_args()
    configs = [int(n) for n in args.workers.split(",") if n.strip()]
    for tool, package in (("nginx", NGINX_PACKAGE), ("redis-server", REDIS_PACKAGE)):
        if ensure_tool(tool, package) is None:
            print(f"scaleout: {tool} is needed (apt-get install {package})", file=sys.stderr)
            return 2
    result: dict[str, Any] = {"tools": tool_versions(), "machine": machine()}
    with (
        terminate_cleanly(),
        tempfile.TemporaryDirectory(prefix="ingest-scaleout-") as tmp,
        RedisProcess.start(Path(tmp)) as redis,
        NginxSink.start() as sink,
        SignerProcess.start(sink.base_url) as signer,
    ):
        print(f"sink {sink.base_url}, signer {signer.base_url}, redis {redis.url}", file=sys.stderr)
        bench = Bench(sink, signer, redis, Path(tmp))
        with contextlib.suppress(OSError):
            result["tools"]["redis-server"] = os.popen("redis-server --version").read().strip()
        if args.part in ("speed", "all"):
            result["speed"] = speed(bench, args.count, args.rounds, configs)
        if args.part in ("rate", "all"):
            result["rate"] = rate(
                bench, args.count, args.rate_workers, args.rate, args.rate_chunk_lines
            )
        if args.part in ("memory", "all"):
            result["memory"] = memory(redis.url, args.items)
    loads = os.getloadavg()
    result["load_after"] = [round(x, 2) for x in loads]
    name = "scaleout" + (f"-{args.tag}" if args.tag else "")
    print(record(name, result, args.save))
    return 0


if __name__ == "__main__":
    sys.exit(main())
