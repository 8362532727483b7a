"""PUT-only CPU per file: the lean transport (`ingest.transport`) against aiohttp's PUT.

Both through `ingest.storage`'s own body path, to the nginx sink
(`ingest.bench.sink`), each variant in its own child process on uvloop,
interleaved, medians of the rounds. A small file's body is bytes (as the
engine's read-ahead gives it); a large file's body is `storage._stream`
(256 KiB chunks read on the reader threads). CPU is the child's own
(`time.process_time`) over the transfer phase only: imports and start-up
are not counted, so the figure is the PUT path's cost.

    python benchmarks/transport.py [--rounds 3] [--small 2000] [--large 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CONCURRENCY = 32


async def _child(transport: str, base: str, paths: list[str], size: int) -> dict[str, Any]:
    import aiohttp
    import yarl

    from ingest import storage
    from ingest.http import USER_AGENT
    from ingest.transport import Pool

    pool = Pool(connect_timeout=10, read_timeout=60, limit=CONCURRENCY, user_agent=USER_AGENT)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=CONCURRENCY), auto_decompress=False
    )
    small = size <= storage.SMALL_FILE
    queue = list(enumerate(paths))
    failed = 0

    async def one(i: int, path: str) -> None:
        nonlocal failed
        url = yarl.URL(f"{base}/d/{i}.png?X-Amz-Signature=abc", encoded=True)
        headers = {"Content-Type": "image/png", "Content-Length": str(size)}
        data: Any = await storage._read_small(Path(path), size) if small else None
        if data is None:
            data = storage._stream(Path(path), size, whole=True)
        if transport == "lean":
            answer = await pool.put(url, headers, data)
            status = answer.status
        else:
            async with session.put(url, data=data, headers=headers) as resp:
                await resp.read()
                status = resp.status
        if status not in (200, 201, 204):
            failed += 1

    async def worker() -> None:
        while queue:
            i, path = queue.pop()
            await one(i, path)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    pool.close()
    await session.close()
    return {
        "cpu_ms_per_file": 1000 * cpu / len(paths),
        "files_s": len(paths) / wall,
        "failed": failed,
    }


def child_main() -> None:
    import uvloop

    transport, base, listing, size = sys.argv[2:6]
    paths = Path(listing).read_text().split()
    print(json.dumps(uvloop.run(_child(transport, base, paths, int(size)))))


def _dataset(folder: Path, count: int, size: int) -> Path:
    listing = folder / f"paths-{count}-{size}.txt"
    names = []
    for i in range(count):
        path = folder / f"f{size}-{i}.bin"
        if not path.exists():
            path.write_bytes(os.urandom(size))
        names.append(str(path))
    listing.write_text("\n".join(names))
    return listing


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        child_main()
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=20)
    args = parser.parse_args()
    from ingest.bench.sink import NginxSink

    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory() as tmp, NginxSink.start() as sink:
        sets = {
            "small": (_dataset(Path(tmp), args.small, 64 * 1024), 64 * 1024),
            "large": (_dataset(Path(tmp), args.large, 16 * 1024 * 1024), 16 * 1024 * 1024),
        }
        for rnd in range(args.rounds):
            for name, (listing, size) in sets.items():
                order = ["lean", "aiohttp"] if rnd % 2 == 0 else ["aiohttp", "lean"]
                for transport in order:
                    sink.clear()
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            transport,
                            sink.base_url,
                            str(listing),
                            str(size),
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    got = json.loads(out.stdout)
                    got["load"] = os.getloadavg()[0]
                    got["stored"] = sink.stored()  # every PUT landed as a file of the sink
                    results.setdefault(name, {}).setdefault(transport, []).append(got)
                    print(f"  {name} round {rnd + 1} {transport:8} {got}", flush=True)
    for name, per in results.items():
        lean = statistics.median(r["cpu_ms_per_file"] for r in per["lean"])
        aio = statistics.median(r["cpu_ms_per_file"] for r in per["aiohttp"])
        lean_fs = statistics.median(r["files_s"] for r in per["lean"])
        aio_fs = statistics.median(r["files_s"] for r in per["aiohttp"])
        print(
            f"{name}: CPU ms/file lean {lean:.3f} aiohttp {aio:.3f} ({aio / lean:.2f}x cheaper); "
            f"files/s lean {lean_fs:.0f} aiohttp {aio_fs:.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
