"""A run whose requests all go by the lean transport never imports aiohttp (`transport.session`).

Importing aiohttp (its TLS contexts included) was 16 % of the CPU of a
2,000-file run though no request used it. Checked in a fresh interpreter:
the modules `ingest run` imports, one API call and one PUT over the lean
pools to a loopback server, then `sys.modules`; and that the first request
the lean transport does not send (a HEAD) makes the aiohttp client then.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, tempfile
    from pathlib import Path

    import ingest.api.wiring, ingest.cli.run, ingest.engine, ingest.providers.novita
    from ingest.http import Timeouts, api_session, request, storage_session
    from ingest.storage import put_file
    from ingest.transport import pool

    async def serve(reader, writer):
        while True:
            try:
                head = await reader.readuntil(b"\\r\\n\\r\\n")
            except asyncio.IncompleteReadError:
                return
            length = 0
            for line in head.split(b"\\r\\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            answer = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n"
            writer.write(answer if head.startswith(b"HEAD") else answer + b"{}")
            await writer.drain()

    async def main():
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        base = "http://127.0.0.1:%d/" % server.sockets[0].getsockname()[1]
        file = Path(tempfile.mkdtemp()) / "a.png"
        file.write_bytes(b"x" * 100)
        async with api_session(base, {"Authorization": "k"}, Timeouts(), 2) as api, \\
                storage_session(Timeouts(), 2) as storage:
            answer = await request(api, "POST", "v3/x", provider="p", op="acquire", json={})
            await put_file(storage, base + "b/1", file, 100, "image/png", provider="p")
            print(answer.status, "aiohttp" in sys.modules, pool._ssl_context is None)
            await request(api, "HEAD", "v3/x", provider="p", op="check")
            print("aiohttp" in sys.modules)
        server.close()

    asyncio.run(main())
    """
)


def test_lean_requests_import_no_aiohttp_until_one_needs_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["200", "False", "True", "True"]
