"""Remote sources against the same files local: issue 15 part 3's streamed fetch, measured.

    python benchmarks/remote.py                          # both workloads, 3 rounds
    python benchmarks/remote.py --workload small --rounds 5

Every measured client is `ingest run --provider novita` (the `ingest` script
beside this Python) uploading to the reference's nginx sink through its
signer (`ingest.bench.sink`, `ingest.bench.signer`, as `sources.py` and
`reference.py`). The remote one reads a list of ``http://127.0.0.1`` URLs
served by a second nginx (`NginxSink` again: its static file handler serves
GETs, each file a symlink to the local data set, with a Content-Length, so
every body is streamed from the GET into the PUT); the local one reads a JSON
lines manifest of the same files.

- **small**: 2,000 × 64 KiB (the reference's data set);
- **large**: 20 × 16 MiB (the first 20 of the reference's 40 × 16 MiB).

In each round the two run in a rotating order; medians of the rounds;
files/s, CPU per file (the client process, start-up included) and peak RSS,
with the remote run against the local one of the same round, and the CPU of
both nginx processes (sink, source) and the signer in cores. Every run is
checked: the sink must hold one object per file and the summary count them
done. The load average before each run is recorded (the machine is shared).
Results: `benchmarks/results/remote-WORKLOAD.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness import dataset, median, save
from reference import terminate_cleanly, tool_versions
from sources import SPEED_COLUMNS, Client, Run, _medians, _show, _table, rotating

from ingest.bench.procs import ensure_tool
from ingest.bench.signer import SignerProcess
from ingest.bench.sink import NGINX_PACKAGE, NginxSink

WORKLOADS = {"small": (2000, 64 * 1024, 2000), "large": (40, 16 * 2**20, 20)}  # made, used
CLIENTS = ("local", "remote")
COLUMNS = [
    ("files/s", "files_per_s", ",.1f"),
    *SPEED_COLUMNS[1:3],
    ("source cores", "source_cores", ".2f"),
    *[(name.replace("loose", "local"), key.replace("loose", "local"), spec)
      for name, key, spec in SPEED_COLUMNS[3:]],
]  # fmt: skip


def served(source: NginxSink, name: str, paths: Sequence[Path], tmp: Path) -> Path:
    """`paths` served by `source` (symlinks in its root), as a list of their URLs."""
    folder = source.root / "data" / name
    folder.mkdir()
    urls = []
    for path in paths:
        (folder / path.name).symlink_to(path)
        urls.append(f"{source.base_url}/{name}/{path.name}\n")
    listing = tmp / f"{name}-urls.txt"
    listing.write_text("".join(urls))
    return listing


def workload(client: Client, source: NginxSink, name: str, rounds: int) -> dict[str, Any]:
    made, size, used = WORKLOADS[name]
    paths, _, _ = dataset(made, size)
    paths = paths[:used]
    manifest = client.tmp / f"{name}.jsonl"
    manifest.write_text("".join(json.dumps({"path": str(p)}) + "\n" for p in paths))
    inputs = {"local": manifest, "remote": served(source, name, paths, client.tmp)}
    runs: dict[str, list[Run]] = {c: [] for c in CLIENTS}
    source_cores: dict[str, list[float]] = {c: [] for c in CLIENTS}
    for round_, what in rotating(CLIENTS, rounds):
        before = source.cpu_s()
        run = client.run(what, round_, inputs[what], used)
        source_cores[what].append((source.cpu_s() - before) / run.wall_s)
        runs[what].append(run)
        _show(run, used)
    rows = {what: _medians(samples) for what, samples in runs.items()}
    for what, row in rows.items():
        row["source_cores"] = median(source_cores[what])
        pairs = [(a, b) for a, b in zip(runs[what], runs["local"], strict=True) if a.ok and b.ok]
        if pairs:  # per round (the machine's pace moves between rounds), then the median
            row["vs_local_files_per_s"] = median([b.wall_s / a.wall_s for a, b in pairs])
            row["vs_local_cpu_per_file"] = median([a.cpu_s / b.cpu_s for a, b in pairs])
    print(f"\n{name}: {used:,} × {size // 1024:,} KiB, medians of {rounds} rounds\n")
    _table("source", rows, COLUMNS)
    return {"files": used, "file_size": size, "rounds": rounds, "rows": rows,
            "runs": [asdict(r) for rs in runs.values() for r in rs]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if ensure_tool("nginx", NGINX_PACKAGE) is None:
        print(f"remote: nginx is needed (apt-get install {NGINX_PACKAGE})", file=sys.stderr)
        return 2
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    with (
        terminate_cleanly(),
        NginxSink.start() as sink,
        NginxSink.start() as source,
        SignerProcess.start(sink.base_url) as signer,
        tempfile.TemporaryDirectory(prefix="ingest-remote-") as tmp,
    ):
        client = Client(sink, signer, Path(tmp))
        for name in names:
            load = os.getloadavg()
            result = workload(client, source, name, args.rounds)
            result |= {"load_before": load, "tools": tool_versions()}
            print(f"saved {save(f'remote-{name}', result)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
