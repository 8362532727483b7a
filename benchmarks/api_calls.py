"""CPU per provider API call: `ingest.http.request` on the lean pool against aiohttp.

    cd /tmp && python /work/ingest/benchmarks/api_calls.py [ROUNDS]

Novita's acquire POST, 16 in flight, uvloop, 4,000 calls a round after 50 warm-up
calls, against a minimal loopback server in its own process (so its CPU is not the
client's); CPU of the client's calls only (`time.process_time`). The two transports
alternate their order each round; medians are printed with the ratio.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import statistics
import sys
import time

import uvloop

BODY = (
    b'{"assets_id":"a1","upload_url":"http://127.0.0.1:1/s3/x?X-Amz-Signature=abc","method":"PUT"}'
)
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Date: Tue, 01 Dec 2026 16:00:00 GMT\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


def server(sock: socket.socket) -> None:
    """Answers every request with the same JSON (kept alive)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                writer.write(ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def main() -> None:
        await asyncio.start_server(handle, sock=sock)
        await asyncio.Event().wait()

    uvloop.run(main())


async def run(base: str, transport: str, calls: int, in_flight: int) -> float:
    """Microseconds of CPU a call."""
    from ingest.http import Timeouts, api_session, request

    auth = {"Authorization": "Bearer k"}
    async with api_session(base, auth, Timeouts(), in_flight, transport) as session:  # type: ignore[arg-type]

        async def one() -> None:
            answer = await request(
                session, "POST", "v3/assets/training_dataset", provider="novita",
                op="acquire", json={"file_extension": "jpeg"},
            )  # fmt: skip
            answer.json()
            answer.headers.get("Date")

        for _ in range(50):
            await one()
        slots = asyncio.Semaphore(in_flight)

        async def slot() -> None:
            async with slots:
                await one()

        start = time.process_time()
        await asyncio.gather(*(slot() for _ in range(calls)))
        return (time.process_time() - start) / calls * 1e6


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    proc = multiprocessing.Process(target=server, args=(sock,), daemon=True)
    proc.start()
    try:
        results: dict[str, list[float]] = {"lean": [], "aiohttp": []}
        for index in range(rounds):
            order = ["lean", "aiohttp"] if index % 2 == 0 else ["aiohttp", "lean"]
            for transport in order:
                results[transport].append(uvloop.run(run(base, transport, 4000, 16)))
        for transport, each in results.items():
            rounded = [round(x) for x in each]
            print(f"{transport}: us CPU a call {rounded}, median {statistics.median(each):.0f}")
        ratio = statistics.median(results["aiohttp"]) / statistics.median(results["lean"])
        print(f"aiohttp / lean: {ratio:.2f}")
    finally:
        proc.kill()


if __name__ == "__main__":
    main()
