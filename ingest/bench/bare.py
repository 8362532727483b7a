"""The *bare* reference client: each provider's requests for a file, with nothing else.

Owns the ceiling the benchmarks measure the engine against: per file, the
provider's acquire call and one PUT of the file, byte for byte, to the URL
it returns (plus the step after the PUT where the flow has one: ModelHunter's
complete, Scenario's attach of 10 assets a call). aiohttp and uvloop (when
installed) as the engine; bodies streamed from disk in 256 KiB chunks by an
async generator with an exact Content-Length, read with aiofiles as a plain
async client reads them (``pip install '.[bench]'``; without aiofiles,
reads go through the loop's default executor and ``reader`` says so);
`--put-concurrency` workers, at most `--api-concurrency` API calls at once.
No journal, validation, retries, leases or progress.

Scenario's images under `SCENARIO_JSON_LIMIT` travel base64 inside JSON (the
body built in memory: bare is simple), ``POST /assets`` in assets mode, a
data URL to the model's training images in inline mode; larger ones as a
multipart upload of 5 MiB parts, then attached: as the adapter sends them.

Prints one JSON object: files, bytes, failed, elapsed_s (the transfer phase:
from the first request to the last answer), reader. Whole-process CPU and
peak RSS are measured by the caller from outside.

    python -m ingest.bench.bare --provider novita --base-url URL PATHS_FILE
    python -m ingest.bench.bare --urls URLS_JSONL     # PUT only: {"path", "url"} a line
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal

import aiohttp
import orjson
import yarl

CHUNK = 256 * 1024
PART_SIZE = 5 * 1024 * 1024  # ingest.providers.scenario.multipart.PART_SIZE
SCENARIO_JSON_LIMIT = 3_500_000  # ingest.providers.scenario.adapter.BASE64_LIMIT
ATTACH_BATCH = 10
TYPES = {
    ".png": ("png", "image/png"),
    ".jpg": ("jpeg", "image/jpeg"),
    ".webp": ("webp", "image/webp"),
}
Flow = Literal["novita", "modelhunter", "autoenhance", "scenario"]
FLOWS: tuple[Flow, ...] = ("novita", "modelhunter", "autoenhance", "scenario")
Job = tuple[str, int, str | None]  # path, size, a pre-signed URL (PUT only)

try:  # imported by name: it ships no type stubs
    aiofiles: Any = importlib.import_module("aiofiles")
    READER = "aiofiles"
except ImportError:  # pragma: no cover - the bench extra installs it
    aiofiles = None
    READER = "executor"


async def _chunks(path: str, offset: int, size: int) -> AsyncIterator[bytes]:
    """`size` bytes of `path` from `offset`, 256 KiB at a time.

    The file is closed before the last chunk goes out: a generator still
    running when the answer arrives makes aiohttp drop the connection.
    """
    sent, chunk = 0, b""
    if aiofiles is not None:
        async with aiofiles.open(path, "rb") as fh:
            await fh.seek(offset)
            while True:
                chunk = await fh.read(min(CHUNK, size - sent))
                sent += len(chunk)
                if not chunk or sent >= size:
                    break
                yield chunk
    else:
        loop = asyncio.get_running_loop()
        fd = os.open(path, os.O_RDONLY)
        try:
            while True:
                chunk = await loop.run_in_executor(
                    None, os.pread, fd, min(CHUNK, size - sent), offset + sent
                )
                sent += len(chunk)
                if not chunk or sent >= size:
                    break
                yield chunk
        finally:
            os.close(fd)
    if chunk:
        yield chunk


async def _read(path: str) -> bytes:
    return b"".join([chunk async for chunk in _chunks(path, 0, os.stat(path).st_size)])


class Bare:
    """One run: the sessions, the API slots, the counters, one method per flow."""

    def __init__(
        self, flow: Flow, base_url: str, key: str, api: int, put: int, inline: bool = False
    ) -> None:
        self.flow = flow
        self.inline = inline  # Scenario's inline mode: one POST an image, no attach
        self.base_url = base_url.rstrip("/") + "/"
        self.key = key
        self.limits = (api, put)
        self.done = self.failed = self.bytes = 0
        self.model = "bench-model"
        self.order = os.urandom(16).hex()
        self.unattached: list[str] = []

    def _open(self) -> None:
        """The sessions (one per role) and the API slots, made inside the running loop."""
        api, put = self.limits
        if self.flow == "autoenhance":
            auth = {"x-api-key": self.key}
        elif self.flow == "scenario":
            pair = base64.b64encode(f"{self.key}:{self.key}".encode()).decode()
            auth = {"Authorization": f"Basic {pair}"}
        else:
            auth = {"Authorization": f"Bearer {self.key}"}
        self.api_slots = asyncio.Semaphore(api)
        self.api = aiohttp.ClientSession(
            base_url=self.base_url, headers=auth, connector=aiohttp.TCPConnector(limit=api)
        )
        self.storage = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=put),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        async with self.api_slots, self.api.request(method, path, json=body, **kw) as resp:
            payload = await resp.read()
            if resp.status not in (200, 201):
                raise RuntimeError(f"{method} {path}: HTTP {resp.status}")
            return orjson.loads(payload) if payload else {}

    async def put(self, url: str, path: str, offset: int, size: int, ctype: str) -> None:
        headers = {"Content-Type": ctype, "Content-Length": str(size)}
        async with self.storage.put(
            yarl.URL(url, encoded=True),
            data=_chunks(path, offset, size),
            headers=headers,
            allow_redirects=False,
        ) as resp:
            await resp.read()
            if resp.status not in (200, 201, 204):
                raise RuntimeError(f"PUT: HTTP {resp.status}")

    async def one(self, path: str, size: int, url: str | None) -> None:
        ext, ctype = TYPES[os.path.splitext(path)[1]]
        name = os.path.basename(path)
        if url is not None:
            await self.put(url, path, 0, size, ctype)
        elif self.flow == "novita":
            answer = await self.call("POST", "v3/assets/training_dataset", {"file_extension": ext})
            await self.put(answer["upload_url"], path, 0, size, ctype)
        elif self.flow == "modelhunter":
            body = {"filename": name, "contentType": ctype, "sizeBytes": size}
            data = (await self.call("POST", "api/v1/files/upload-url", body))["data"]
            await self.put(data["upload_url"], path, 0, size, ctype)
            await self.call("POST", f"api/v1/files/{data['file_id']}/complete")
        elif self.flow == "autoenhance":
            body = {"image_name": name, "content_type": ctype, "order_id": self.order}
            answer = await self.call("POST", "v3/images/", body)
            await self.put(answer["upload_url"], path, 0, size, ctype)
        else:
            await self.scenario(path, name, size, ctype)
        self.done += 1
        self.bytes += size

    async def scenario(self, path: str, name: str, size: int, ctype: str) -> None:
        headers = {"Content-Type": "application/json"}
        if size >= SCENARIO_JSON_LIMIT:
            asset = await self.multipart(path, name, size, ctype)
        elif self.inline:  # a data URL, attached in the same call
            data = base64.b64encode(await _read(path))
            body = b'{"data":"data:' + ctype.encode() + b";base64," + data + b'","name":'
            body += orjson.dumps(name) + b',"preset":"default"}'
            await self.call("POST", f"models/{self.model}/training-images", data=body,
                            headers=headers)  # fmt: skip
            return
        else:
            data = await _read(path)
            body = b'{"name":' + orjson.dumps(name) + b',"image":"' + base64.b64encode(data) + b'"}'
            answer = await self.call("POST", "assets", data=body, headers=headers)
            asset = answer["asset"]["id"]
        if self.inline:
            attach = {"assetId": asset, "preset": "default"}
            await self.call("POST", f"models/{self.model}/training-images", attach)
            return
        self.unattached.append(asset)
        if len(self.unattached) >= ATTACH_BATCH:
            await self.attach()

    async def multipart(self, path: str, name: str, size: int, ctype: str) -> str:
        """A multipart upload of 5 MiB parts; the new asset's id."""
        parts = math.ceil(size / PART_SIZE)
        create = {"fileName": name, "fileSize": size, "contentType": ctype, "kind": "image",
                  "parts": parts}  # fmt: skip
        upload = (await self.call("POST", "uploads", create))["upload"]
        for part in upload["parts"]:
            offset = (part["number"] - 1) * PART_SIZE
            await self.put(part["url"], path, offset, min(PART_SIZE, size - offset), ctype)
        answer = await self.call("POST", f"uploads/{upload['id']}/action", {"action": "complete"})
        return str(answer["upload"]["entityId"])

    async def attach(self) -> None:
        batch, self.unattached = self.unattached[:ATTACH_BATCH], self.unattached[ATTACH_BATCH:]
        if batch:
            body = {"assetIds": batch, "preset": "default"}
            await self.call("POST", f"models/{self.model}/training-images", body)

    async def run(self, jobs: Sequence[Job], workers: int) -> dict[str, Any]:
        queue = iter(jobs)

        async def worker() -> None:
            for path, size, url in queue:
                try:
                    await self.one(path, size, url)
                except (RuntimeError, KeyError, TypeError, aiohttp.ClientError) as exc:
                    self.failed += 1
                    print(f"bare: {path}: {exc}", file=sys.stderr)

        self._open()
        start = time.perf_counter()
        async with self.api, self.storage:
            if self.flow == "scenario" and jobs and jobs[0][2] is None:
                await self.call("GET", f"models/{self.model}")
            await asyncio.gather(*(worker() for _ in range(workers)))
            while self.unattached:
                await self.attach()
        elapsed = time.perf_counter() - start
        return {"files": self.done, "bytes": self.bytes, "failed": self.failed,
                "elapsed_s": elapsed, "reader": READER}  # fmt: skip


def sink_objects(flow: str, sizes: list[int]) -> int:
    """How many objects a run of `flow` stores at the sink for files of `sizes`.

    One per file, except Scenario: its JSON uploads go to the API (none), its
    multipart uploads (in either mode) one object per part.
    """
    if flow != "scenario":
        return len(sizes)
    return sum(math.ceil(size / PART_SIZE) for size in sizes if size >= SCENARIO_JSON_LIMIT)


def read_jobs(paths_file: str | None, urls_file: str | None) -> list[Job]:
    """(path, size, URL or None) per file, listed and measured before the clock starts."""
    if urls_file:
        rows = [orjson.loads(line) for line in Path(urls_file).read_bytes().splitlines() if line]
        pairs: list[tuple[str, str | None]] = [(str(r["path"]), str(r["url"])) for r in rows]
    else:
        assert paths_file is not None
        pairs = [(line, None) for line in Path(paths_file).read_text().splitlines() if line]
    return [(path, os.stat(path).st_size, url) for path, url in pairs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ingest.bench.bare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("paths", nargs="?", help="a file with one image path per line")
    parser.add_argument("--urls", help="JSON lines of {path, url}: PUT only, no acquire")
    parser.add_argument("--provider", choices=FLOWS, default="novita")
    parser.add_argument("--base-url", help="the provider API (the signer) base URL")
    parser.add_argument("--key", default="sk-bench")
    parser.add_argument("--scenario-mode", choices=("assets", "inline"), default="assets")
    parser.add_argument("--api-concurrency", type=int, default=16)
    parser.add_argument("--put-concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    if not args.urls and not (args.paths and args.base_url):
        parser.error("give PATHS and --base-url, or --urls")
    jobs = read_jobs(args.paths, args.urls)
    bare = Bare(
        args.provider,
        args.base_url or "http://127.0.0.1",
        args.key,
        args.api_concurrency,
        args.put_concurrency,
        inline=args.scenario_mode == "inline",
    )
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(bare.run(jobs, args.put_concurrency))
    else:
        result = uvloop.run(bare.run(jobs, args.put_concurrency))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
