"""The engine's own CPU per item, with no HTTP: steadier than a whole run for hot-path A/Bs.

    python benchmarks/engine.py                                # 10,000 × 64 KiB, 5 rounds
    python benchmarks/engine.py --against /path/to/other/checkout --rounds 7

One `Engine` in this process, on uvloop, with everything a run has per item
except the HTTP: the manifest reader and its same-file check, triage and
validation (the read-ahead of small files included), the two slots, both
pacers, the journal (on disk, group commit and fsync), the tally and an
observer; the provider answers `acquire` and `transfer` at once (a transfer
of a file not read ahead reads it as `ingest.storage` does). What is measured
is `time.process_time()` over `Engine.run`, all threads: the part of a
file's CPU that a bare sign+PUT loop does not pay, plus the file read it
pays too.

`--against DIR` runs the same measurement with DIR's `ingest` (a second
checkout or worktree, put first on PYTHONPATH) in a separate process,
interleaved with this one's round by round, and prints both with their
per-round ratio: compare by that ratio, not across machines or loads.
Files are the reference workload's (`benchmarks/harness.py`'s `dataset`).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
from harness import dataset


async def _once(manifest: Path, folder: Path) -> tuple[float, int]:
    from ingest.capabilities import Capabilities
    from ingest.clock import SYSTEM
    from ingest.config import RunSettings
    from ingest.engine import Engine, EngineSettings
    from ingest.journal import Header, Journal
    from ingest.lease import Lease
    from ingest.manifest import read_manifest
    from ingest.providers.base import Landed, Target
    from ingest.sniff import ImageType
    from ingest.storage import _read_small

    class Instant:
        name: ClassVar[str] = "fake"
        caps = Capabilities(formats=frozenset(ImageType), max_size=None, url_lifetime_s=3600)

        def __init__(self) -> None:
            self.signed = 0

        async def acquire(self, source: Any) -> Target:
            self.signed += 1
            return Target(
                remote_id=f"r{self.signed}",
                url=f"http://127.0.0.1:1/b/{self.signed}?X-Amz-Signature=00",
                content_type=source.content_type,
                lease=Lease(time.time() + 3600, 3600, "default"),
            )

        async def transfer(self, source: Any, target: Target) -> Target:
            if source.body is None:  # not read ahead: read as storage.put_file does
                await _read_small(source.item.path, source.size)
            await anyio.lowlevel.checkpoint()
            return target

        def landed(self, source: Any, target: Target) -> Landed:
            return Landed(remote_id=target.remote_id)

    class Quiet:
        def item_done(self, done: object) -> None: ...
        def item_failed(self, *args: object) -> None: ...
        def item_rejected(self, *args: object) -> None: ...
        def item_changed(self, *args: object) -> None: ...

    path = folder / "engine.journal"  # a new folder each round
    journal, state = Journal.open(path, Header(provider="fake", manifest=str(manifest)))
    with journal:
        engine = Engine(
            Instant(),  # type: ignore[arg-type]
            journal,
            state,
            EngineSettings(RunSettings()),
            observer=Quiet(),
            clock=SYSTEM,
            rng=random.Random(7),
        )
        started = time.process_time()
        outcome = await engine.run(read_manifest(manifest))
        journal.sync()
        return time.process_time() - started, outcome.counters.done


def measure(count: int) -> float:
    """One round in this process: the engine's CPU per item in µs."""
    _, manifest, _ = dataset(count, 64 * 1024)
    with tempfile.TemporaryDirectory(prefix="ingest-engine-") as tmp:
        cpu, done = anyio.run(_once, manifest, Path(tmp), backend_options={"use_uvloop": True})
    if done != count:
        raise SystemExit(f"only {done} of {count} items done")
    return cpu * 1e6 / count


def _round(count: int, checkout: str | None) -> float:
    env = dict(os.environ)
    if checkout is not None:
        env["PYTHONPATH"] = os.pathsep.join([checkout, str(Path(__file__).parent)])
    out = subprocess.run(
        [sys.executable, __file__, "--count", str(count), "--one"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),  # a cwd holding ingest/ would shadow the one measured
    )
    return float(out.stdout.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", metavar="DIR", help="another checkout, interleaved")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(f"{measure(args.count):.2f}")
        return 0
    this, other = [], []
    for round_ in range(args.rounds):
        load = os.getloadavg()[0]
        this.append(_round(args.count, None))
        line = f"round {round_ + 1}: {this[-1]:7.1f} µs/item"
        if args.against:
            other.append(_round(args.count, args.against))
            line += f"   against: {other[-1]:7.1f}   ratio {this[-1] / other[-1]:.3f}"
        print(f"{line}   load {load:.1f}", file=sys.stderr)
    summary = f"engine CPU per item, median of {args.rounds}: {statistics.median(this):.1f} µs"
    if args.against:
        ratios = [a / b for a, b in zip(this, other, strict=True)]
        summary += (
            f"; against {statistics.median(other):.1f} µs; "
            f"median ratio {statistics.median(ratios):.3f}"
        )
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
