"""Scale: a 10^6-entry manifest, its journal, replay, status and compaction.

Distinct ids point at a small set of files (1,000 × 4 KiB). Runs `ingest run`
on a 10,000-entry manifest and on a `--entries` (default 1,000,000) one, each
against a fresh emulator, and compares their peak RSS. Then, on the big
run's journal: replay time (in a fresh process, `ingest.journal.replay`),
`ingest status` wall time, and bytes per item before and after compaction.
Replay and status run `--rounds` times each, interleaved; the figures are
medians, with their CPU (user + sys, the steadier figure on a loaded
machine) and the 1-minute load beside them.

Bars: peak RSS(10^6) ≤ 1.25 × peak RSS(10^4); replay < 5 s; status < 3 s;
≤ 200 bytes per item after compaction.

    python benchmarks/scale.py [--entries 1000000] [--journal-only] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import (
    DATA,
    EmulatorProcess,
    dataset,
    env_with_key,
    ingest_run,
    measure,
    run_measured,
    save,
    write_manifest,
)

REPLAY = (
    "import sys, time; from pathlib import Path; from ingest.journal import replay; "
    "t, c = time.perf_counter(), time.process_time(); r = replay(Path(sys.argv[1])); "
    "print(time.perf_counter() - t, time.process_time() - c, len(r.done), r.records)"
)


def synthetic_journal(path: Path, entries: int) -> Path:
    """A journal of `entries` items shaped as `ingest run` writes them (Novita: acq, done)."""
    import orjson

    from ingest.journal import Header

    header = Header(
        provider="novita", manifest=str(path.with_suffix(".jsonl")), created=time.time()
    )
    mtime = time.time_ns()
    with path.open("wb") as fh:
        fh.write(orjson.dumps(header.to_record()) + b"\n")
        fh.write(orjson.dumps({"s": "run", "t": round(time.time(), 3), "pid": 1}) + b"\n")
        batch = []
        for index in range(entries):
            key, remote = f"b-{index:07d}", str(100001 + index)
            batch.append(orjson.dumps({"s": "acq", "k": key, "r": remote}) + b"\n")
            batch.append(
                orjson.dumps({"s": "done", "k": key, "r": remote, "z": 4096, "m": mtime}) + b"\n"
            )
            if len(batch) >= 8192:
                fh.write(b"".join(batch))
                batch.clear()
        fh.write(b"".join(batch))
        fh.write(orjson.dumps({"s": "end", "n": entries}) + b"\n")
    return path


def journal_figures(big: Path, entries: int, tmp: Path, rounds: int = 1) -> dict[str, object]:
    """Replay (fresh process), `ingest status`, and compaction of the journal `big`.

    Replay and status run `rounds` times each, interleaved: medians of each figure.
    """
    env = env_with_key()
    size = big.stat().st_size
    samples: dict[str, list[float]] = {}
    records = done = 0
    for _ in range(rounds):
        out, _, usage = run_measured([sys.executable, "-c", REPLAY, str(big)])
        replay_s, replay_cpu_s, _done, records_ = out.split()
        records = int(records_)
        status_out, _, status_usage = run_measured(
            [sys.executable, "-m", "ingest", "status", str(big), "--json"], env=env
        )
        done = json.loads(status_out).get("done")
        for name, value in (
            ("replay_s", float(replay_s)),
            ("replay_cpu_s", float(replay_cpu_s)),
            ("replay_process_wall_s", usage.wall_s),
            ("replay_process_cpu_s", usage.cpu_s),
            ("replay_peak_rss_mib", usage.peak_rss_bytes / 2**20),
            ("status_wall_s", status_usage.wall_s),
            ("status_cpu_s", status_usage.cpu_s),
            ("status_peak_rss_mib", status_usage.peak_rss_bytes / 2**20),
            ("load_1m", os.getloadavg()[0]),
        ):
            samples.setdefault(name, []).append(value)
    compacted = tmp / "compacted.journal"
    shutil.copy(big, compacted)
    from ingest.journal import compact

    start = time.perf_counter()
    compact(compacted)
    compact_s = time.perf_counter() - start
    return {
        "journal_bytes": size,
        "journal_records": records,
        "bytes_per_item": size / entries,
        "rounds": rounds,
        **{name: statistics.median(values) for name, values in samples.items()},
        "samples": samples,
        "status_done": done,
        "compact_s": compact_s,
        "bytes_per_item_compacted": compacted.stat().st_size / entries,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=10_000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="replay and status runs each (medians)"
    )
    parser.add_argument(
        "--journal-only",
        action="store_true",
        help="skip the runs: time replay, status and compaction of a journal written "
        "record for record as the engine writes it (run, acq + done per item, end)",
    )
    args = parser.parse_args()
    if args.journal_only:
        with tempfile.TemporaryDirectory(prefix="ingest-bench-", dir=DATA) as tmp:
            journal = synthetic_journal(Path(tmp) / "synthetic.journal", args.entries)
            result = {
                "entries": args.entries,
                "synthetic": True,
                **journal_figures(journal, args.entries, Path(tmp), args.rounds),
            }
        print(json.dumps(result, indent=2))
        print(f"saved {save('scale-journal', result)}")
        return 0
    paths, _, _ = dataset(1000, 4096)
    env = env_with_key()
    result: dict[str, object] = {"entries": args.entries, "reference": args.reference}
    with tempfile.TemporaryDirectory(prefix="ingest-bench-", dir=DATA) as tmp:
        journals = {}
        for entries in (args.reference, args.entries):
            manifest = write_manifest(paths, Path(tmp) / f"m{entries}.jsonl", entries=entries)
            journal = Path(tmp) / f"j{entries}.journal"
            with EmulatorProcess.start() as emu:
                args_ = [a for a in ingest_run(manifest, emu.base_url, journal) if a != "--json"]
                sample = measure([*args_, "--quiet"], emu, env=env)
            result[f"run_{entries}"] = {
                "ok": sample.ok,
                "wall_s": sample.wall_s,
                "files_per_s": entries / sample.wall_s,
                "cpu_ms_per_file": sample.cpu_s * 1000 / entries,
                "peak_rss_mib": sample.rss_mib,
                "emulator_cores": sample.emulator_cpu_s / sample.wall_s,
            }
            journals[entries] = journal
            print(f"  {entries:>9,} entries: {result[f'run_{entries}']}", file=sys.stderr)
        result |= journal_figures(journals[args.entries], args.entries, Path(tmp), args.rounds)
    ref = result[f"run_{args.reference}"]
    big_run = result[f"run_{args.entries}"]
    assert isinstance(ref, dict) and isinstance(big_run, dict)
    result["rss_ratio"] = big_run["peak_rss_mib"] / ref["peak_rss_mib"]
    print(json.dumps(result, indent=2))
    print(f"saved {save('scale', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
