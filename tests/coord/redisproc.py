"""Test kit: a real `redis-server` on a free loopback port, AOF on, stopped by its PID.

`fakeredis` is not trusted here: pending-entry and XAUTOCLAIM semantics are
what the coordinator relies on (../shared/scaleout.md). The server itself is
`ingest.bench.redisserver.RedisProcess` (the scale-out benchmark's too).
Without the binary the tests are skipped, except under CI (`.ci/run` installs
it), where a missing server is a failure rather than a silent skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.bench.redisserver import RedisProcess


@dataclass(frozen=True, slots=True)
class RedisServer:
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
    """`redis-server` in `directory` (AOF there, no RDB), answering PING, stopped at exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (.ci/run installs Debian's redis-server)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with RedisProcess.start(directory, binary) as server:  # stopped by its PID
        yield RedisServer(server.port, server.pid)
