"""A real `redis-server` for the coordinator's tests and benchmarks: free port, AOF, by PID.

Owns `RedisProcess`: Debian's ``redis-server`` started on a free loopback
port in a folder of the caller's (AOF on there, no RDB snapshots,
``maxmemory-policy noeviction`` as `ingest.coord.connection` requires), its
CPU read from ``/proc`` (`ingest.bench.procs`), stopped by its PID.

How it works: `RedisProcess.start(folder)` spawns the server with a
parent-death signal (a harness killed outright does not leave it running)
and polls until it answers ``PING`` (the server writes no ready line we
could wait on instead); a port taken between choosing it and the server's
bind is retried on another, up to three times.

Invariants: the server listens on 127.0.0.1 only; `stop` (and leaving the
``with`` block) ends it with SIGTERM by its PID, then SIGKILL after a
bounded grace (`ServerProcess.stop`), and reaps it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from ingest.bench.procs import ServerProcess, die_with_parent, find_tool, free_port

REDIS_PACKAGE = "redis-server"  # Debian 12: Redis 7.0
START_TIMEOUT_S = 10.0


def pong(port: int) -> bool:
    """Whether a server on 127.0.0.1:`port` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisProcess(ServerProcess):
    """A running redis-server (see the module docstring); use as a context manager.

    Its `base_url` is the ``redis://`` URL of database 0; `cpu_s` and `stop`
    (SIGTERM by its PID, SIGKILL after a grace, reaped) are `ServerProcess`'s.
    """

    @property
    def url(self) -> str:
        return self.base_url

    @property
    def port(self) -> int:
        return int(self.base_url.rpartition(":")[2].partition("/")[0])

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    def start(cls, directory: Path, binary: str | None = None) -> RedisProcess:
        """A server keeping its AOF in `directory`; `RuntimeError` naming why it did not start."""
        found = binary or find_tool("redis-server")
        if found is None:
            raise RuntimeError(
                f"redis-server is not installed (Debian: apt-get install {REDIS_PACKAGE})"
            )
        last = ""
        for _attempt in range(3):  # a free port may be taken before the server binds it
            port = free_port()
            argv = [found, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            argv += ["--appendonly", "yes", "--dir", str(directory)]
            argv += ["--maxmemory-policy", "noeviction"]
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
                preexec_fn=die_with_parent,  # one prctl in the child, no locks taken
            )
            server = cls(f"redis://127.0.0.1:{port}/0", proc)
            deadline = time.monotonic() + START_TIMEOUT_S
            while not pong(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    last = f"redis-server on port {port} did not answer PING"
                    break
                time.sleep(0.01)  # polling a child's readiness: no event to wait on
            else:
                return server
            server.stop()
        raise RuntimeError(last)
