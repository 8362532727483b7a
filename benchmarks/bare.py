"""The *bare* reference: the same requests as `ingest run`, with nothing else.

For each file: one acquire POST to Novita's ``/v3/assets/training_dataset``
(or, with ``--urls``, a pre-signed URL handed in), then one PUT of the file to
the returned URL, byte for byte, the body streamed from disk in 256 KiB chunks
by an async generator with an exact Content-Length. aiohttp and uvloop (when
installed) as the engine, files read with aiofiles as a plain async client
reads them (`pip install -e '.[bench]'`), same concurrency: `--put-concurrency`
workers, at most `--api-concurrency` API calls at once. No journal, no retries,
no leases, no progress: the ceiling of our own stack.

Prints one JSON object: files, bytes, failed, elapsed_s (transfer phase).
Whole-process CPU and peak RSS are measured by the harness from outside.

    python benchmarks/bare.py --base-url http://127.0.0.1:PORT LIST_OF_PATHS
    python benchmarks/bare.py --urls URLS_JSONL          # PUT only: {"path","url","type"}
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiofiles
import aiohttp
import orjson
import yarl

CHUNK = 256 * 1024
TYPES = {
    ".png": ("png", "image/png"),
    ".jpg": ("jpeg", "image/jpeg"),
    ".webp": ("webp", "image/webp"),
}


async def _body(path: str, size: int) -> AsyncIterator[bytes]:
    # The file is closed before the last chunk goes out: a generator still running
    # when the answer arrives makes aiohttp drop the connection instead of reusing it.
    sent, chunk = 0, b""
    async with aiofiles.open(path, "rb") as fh:
        while True:
            chunk = await fh.read(min(CHUNK, size - sent))
            sent += len(chunk)
            if not chunk or sent >= size:
                break
            yield chunk
    if chunk:
        yield chunk


async def _put(storage: aiohttp.ClientSession, url: str, path: str, size: int, ctype: str) -> bool:
    headers = {"Content-Type": ctype, "Content-Length": str(size)}
    async with storage.put(
        yarl.URL(url, encoded=True), data=_body(path, size), headers=headers, allow_redirects=False
    ) as resp:
        await resp.read()
        return resp.status == 200


def _jobs(args: argparse.Namespace) -> list[tuple[str, int, str | None]]:
    """(path, size, URL or None) per file, listed and measured before the clock starts."""
    if args.urls:
        rows = [orjson.loads(line) for line in Path(args.urls).read_bytes().splitlines() if line]
        pairs: list[tuple[str, str | None]] = [(str(row["path"]), str(row["url"])) for row in rows]
    else:
        pairs = [(line, None) for line in Path(args.paths).read_text().splitlines() if line]
    return [(path, os.stat(path).st_size, url) for path, url in pairs]


async def _main(
    args: argparse.Namespace, listed: list[tuple[str, int, str | None]]
) -> dict[str, object]:
    jobs = iter(listed)
    api_slots = asyncio.Semaphore(args.api_concurrency)
    done = failed = total_bytes = 0
    api = aiohttp.ClientSession(
        base_url=(args.base_url or "http://127.0.0.1").rstrip("/") + "/",
        headers={"Authorization": f"Bearer {args.key}"},
        connector=aiohttp.TCPConnector(limit=args.api_concurrency),
    )
    storage = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=args.put_concurrency),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )

    async def worker() -> None:
        nonlocal done, failed, total_bytes
        for path, size, url in jobs:
            ext, ctype = TYPES[os.path.splitext(path)[1]]
            if url is None:
                async with (
                    api_slots,
                    api.post("v3/assets/training_dataset", json={"file_extension": ext}) as resp,
                ):
                    payload = orjson.loads(await resp.read())
                url = payload["upload_url"]
            if await _put(storage, url, path, size, ctype):
                done += 1
                total_bytes += size
            else:
                failed += 1

    start = time.perf_counter()
    async with api, storage:
        await asyncio.gather(*(worker() for _ in range(args.put_concurrency)))
    elapsed = time.perf_counter() - start
    return {"files": done, "bytes": total_bytes, "failed": failed, "elapsed_s": elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="?", help="a file with one image path per line")
    parser.add_argument("--urls", help="JSON lines of {path, url}: PUT only, no acquire")
    parser.add_argument("--base-url", help="the emulator (provider API) base URL")
    parser.add_argument("--key", default="sk-bench")
    parser.add_argument("--api-concurrency", type=int, default=16)
    parser.add_argument("--put-concurrency", type=int, default=32)
    args = parser.parse_args()
    if not args.urls and not (args.paths and args.base_url):
        parser.error("give PATHS and --base-url, or --urls")
    try:
        import uvloop

        result = uvloop.run(_main(args, _jobs(args)))
    except ImportError:
        result = asyncio.run(_main(args, _jobs(args)))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
