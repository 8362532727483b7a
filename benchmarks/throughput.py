"""Throughput against *bare* and established tools, one workload (see small.py, large.py).

Per round, in a rotating order: `ingest run` (fresh journal), *bare*
(`ingest.bench.bare`: the same acquire POST + PUT with nothing else),
`curl --parallel` and rclone's S3 backend. curl and rclone cannot ask
Novita's API for URLs: curl PUTs to URLs pre-signed before its measurement
starts (so it does half the requests of the others), rclone signs its own
requests with an Authorization header and goes to the emulator's discarding
sink route. A missing tool is skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import (
    EmulatorProcess,
    Sample,
    bare,
    curl_config,
    dataset,
    env_with_key,
    have,
    ingest_run,
    ingest_summary,
    measure,
    presign,
    rclone,
    rclone_env,
    save,
    summarize,
    table,
)


def run(name: str, count: int, size: int, rounds: int, tools: bool) -> dict[str, Any]:
    paths, manifest, paths_file = dataset(count, size)
    nbytes = count * size
    notes: list[str] = []
    use_curl = tools and have("curl")
    use_rclone = tools and have("rclone")
    if tools and not use_curl:
        notes.append("curl not available: skipped")
    if tools and not use_rclone:
        notes.append("rclone not available: skipped")
    samples: dict[str, list[Sample]] = {"ingest": [], "bare": []}
    if use_curl:
        samples["curl --parallel (PUT only)"] = []
    if use_rclone:
        samples["rclone s3 (sink)"] = []
    env = env_with_key()
    with (
        tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp,
        EmulatorProcess.start(sink=use_rclone) as emu,
    ):
        journal = Path(tmp) / "run.journal"
        order = list(samples)
        for round_ in range(rounds):
            for client in order[round_ % len(order) :] + order[: round_ % len(order)]:
                if client == "ingest":
                    sample = measure(
                        ingest_run(manifest, emu.base_url, journal), emu, env=env,
                        parse=ingest_summary,
                    )  # fmt: skip
                    summary = sample.extra
                    if summary.get("done") != count:
                        sample.ok = False
                        print(f"  ! ingest: {summary}", file=sys.stderr)
                elif client == "bare":
                    sample = measure(bare(paths_file, emu.base_url), emu, parse=json.loads)
                    sample.ok = sample.ok and sample.extra.get("files") == count
                elif client.startswith("curl"):
                    urls = presign(emu.base_url, paths)
                    config = curl_config(paths, urls, Path(tmp) / "curl.cfg")
                    sample = measure(
                        ["curl", "--parallel", "--parallel-max", "32", "--silent",
                         "--show-error", "--fail", "--config", str(config)], emu,
                    )  # fmt: skip
                else:
                    before = emu.get("/_bench/sink")["puts"]
                    sample = measure(rclone(paths[0].parent, emu.base_url), emu, env=rclone_env())
                    sample.ok = sample.ok and emu.get("/_bench/sink")["puts"] - before == count
                samples[client].append(sample)
                print(
                    f"  round {round_ + 1} {client:28s} {count / sample.wall_s:9.1f} files/s "
                    f"{sample.cpu_s * 1000 / count:7.3f} ms CPU/file {sample.rss_mib:6.0f} MiB "
                    f"emulator {sample.emulator_cpu_s / sample.wall_s:.2f} cores"
                    + ("" if sample.ok else "  FAILED"),
                    file=sys.stderr,
                )
        stats = emu.stats()
    rows = summarize(samples, count, nbytes)
    print(table(rows))
    for note in notes:
        print(f"note: {note}")
    result = {"files": count, "file_size": size, "rounds": rounds, "rows": rows, "notes": notes,
              "emulator_expired": stats.get("expired")}  # fmt: skip
    print(f"saved {save(name, result)}")
    return result


def main(name: str, count: int, size: int) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=count)
    parser.add_argument("--no-tools", action="store_true", help="skip curl and rclone")
    args = parser.parse_args()
    run(name, args.count, size, args.rounds, not args.no_tools)
    return 0
