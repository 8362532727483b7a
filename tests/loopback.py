"""Test kit: a stdlib HTTP server on loopback, in a thread, for a test that needs a few
canned answers (an aiohttp app is the heavier choice, `tests/unit/test_remote.Server`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = Callable[[BaseHTTPRequestHandler], tuple[int, bytes]]  # a GET -> (status, body)


@contextmanager
def serving(answer: Answer) -> Iterator[str]:
    """A server answering every GET with `answer(request)`, with a Content-Length; its base
    URL (``http://127.0.0.1:PORT``). Shut down and closed on exit."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answer(self)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # no request lines on the test's stderr

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
