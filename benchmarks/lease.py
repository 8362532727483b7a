"""Lease pressure: 5 s URLs and a slow storage route, against the same run with 120 s URLs.

The emulator's storage route is throttled with ``put.latency`` (each PUT
takes 0.5–1.5 × the given seconds), so an upload takes a good share of a
5 s lifetime, and a share of PUTs (``put.503``) is refused after its body
with ``Retry-After`` (``put.retry_after``): the retry comes too late for a
5 s URL, which must be re-signed first (URLs are signed just in time, so
without retries none would ever need it). Two emulators run side by side,
identical but for the URL lifetime; `ingest run` uploads the same files to
each, alternating, for `--rounds` rounds.

Bar: zero items failed; every re-sign counted (the engine's count equals the
emulator's extra URLs issued: assets issued − files); files/s with 5 s URLs
within 10 % of the run with 120 s URLs.

    python benchmarks/lease.py [--rounds 3] [--count 300] [--put-latency 2] [--put-503 0.1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import (
    EmulatorProcess,
    dataset,
    env_with_key,
    ingest_run,
    ingest_summary,
    measure,
    median,
    save,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--put-latency", type=float, default=2.0)
    parser.add_argument("--put-503", type=float, default=0.1, help="share of PUTs refused")
    parser.add_argument("--retry-after", type=float, default=2.0, help="their Retry-After")
    args = parser.parse_args()
    _, manifest, _ = dataset(args.count, 64 * 1024)
    faults = (
        f"seed=1,put.latency={args.put_latency},put.503={args.put_503},"
        f"put.retry_after={args.retry_after}"
    )
    runs: dict[str, list[dict[str, Any]]] = {"5 s": [], "120 s": []}
    env = env_with_key()
    with (
        tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp,
        EmulatorProcess.start(lifetime=5, faults=faults) as short,
        EmulatorProcess.start(lifetime=120, faults=faults) as long_,
    ):
        journal = Path(tmp) / "lease.journal"
        for round_ in range(args.rounds):
            pairs = [("5 s", short), ("120 s", long_)]
            for label, emu in pairs if round_ % 2 == 0 else pairs[::-1]:
                before = emu.stats()
                sample = measure(
                    ingest_run(manifest, emu.base_url, journal), emu, env=env, parse=ingest_summary
                )
                after = emu.stats()
                summary = sample.extra
                this = summary.get("this_run", {})
                issued = after["assets_issued"] - before["assets_issued"]
                row = {
                    "files_per_s": args.count / sample.wall_s,
                    "done": summary.get("done"),
                    "failed": summary.get("failed"),
                    "resigns": this.get("resigns"),
                    "extra_urls_issued": issued - args.count,
                    "expired_puts": after["expired"] - before["expired"],
                    "retries": this.get("retries"),
                    "cpu_s": sample.cpu_s,
                }
                runs[label].append(row)
                print(f"  round {round_ + 1} lifetime {label:5s} {row}", file=sys.stderr)
    short_rate = median([r["files_per_s"] for r in runs["5 s"]])
    long_rate = median([r["files_per_s"] for r in runs["120 s"]])
    failed = sum((r["failed"] or 0) for rs in runs.values() for r in rs)
    counted = all(r["resigns"] == r["extra_urls_issued"] for rs in runs.values() for r in rs)
    result = {
        "files": args.count,
        "faults": faults,
        "runs": runs,
        "files_per_s": {"5 s": short_rate, "120 s": long_rate},
        "ratio": short_rate / long_rate,
        "failed": failed,
        "resigns_all_counted": counted,
        "resigns_5s": [r["resigns"] for r in runs["5 s"]],
    }
    print(
        f"5 s URLs {short_rate:.1f} files/s, 120 s URLs {long_rate:.1f} files/s "
        f"(ratio {short_rate / long_rate:.3f}); failed {failed}; "
        f"re-signs (5 s) {result['resigns_5s']}; every re-sign counted: {counted}"
    )
    print(f"saved {save('lease', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
