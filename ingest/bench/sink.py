"""The free-running PUT sink of the reference benchmarks: one nginx worker, DAV into memory.

Owns `NginxSink`: an nginx from the system's packages, started on a free
loopback port, stopped by its PID, its CPU (master and worker) read from
``/proc`` (`ingest.bench.procs`).

How it works: `NginxSink.start()` writes a config into a fresh folder under
``/dev/shm`` (memory-backed), with one worker, ``access_log off``, no body
size limit, request bodies and stored objects in that same folder (so the
DAV module's rename of a finished body is a rename, not a copy), and
``dav_methods PUT`` with ``create_full_put_path`` for every path: any URL the
signer hands out, and rclone's ``/bucket/key`` paths, store the body. The
query string (the signature) is ignored, as a sink should. nginx runs in
the foreground (``daemon off``) as a child of this process, which waits for
its port to accept and for its worker to exist before returning.

Invariants: the sink is stopped (SIGTERM to the master's PID, then SIGKILL
after a bounded grace) and its folder removed on every exit path of the
``with`` block; the master is started with a parent-death signal, so a
harness killed outright does not leave it running; folders left by an
earlier process that died (``ingest-sink-PID-*`` with PID gone) are removed
on the next start. Nothing here talks to any host but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ingest.bench.procs import children_of, die_with_parent, find_tool, free_port, process_cpu_s

SHM = Path("/dev/shm")
NGINX_PACKAGE = "nginx-light"  # Debian: nginx with the DAV module built in
_PREFIX = "ingest-sink-"
_START_TIMEOUT_S = 10.0


def _is_nginx_worker(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"nginx: worker")
    except OSError:
        return False


def _config(root: Path, port: int) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""  # the worker writes into root's folder
    temp = root / "body"
    return f"""{user}worker_processes 1;
daemon off;
pid {root / "nginx.pid"};
error_log {root / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_max_body_size 0;
    client_body_temp_path {temp};
    proxy_temp_path {temp};
    fastcgi_temp_path {temp};
    uwsgi_temp_path {temp};
    scgi_temp_path {temp};
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root / "data"};
        location / {{
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw;
        }}
    }}
}}
"""


def _remove_stale() -> None:
    """Folders of sinks whose process died without cleaning up (``ingest-sink-PID-*``)."""
    if not SHM.is_dir():
        return
    for path in SHM.glob(_PREFIX + "*"):
        owner = path.name[len(_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(path, ignore_errors=True)


@dataclass
class NginxSink:
    """A running nginx PUT sink (see the module docstring); use as a context manager."""

    base_url: str
    root: Path
    proc: subprocess.Popen[bytes]
    workers: list[int] = field(default_factory=list)

    @classmethod
    def start(cls, nginx: str | None = None) -> NginxSink:
        """Start a sink; `RuntimeError` naming why when nginx is missing or does not start."""
        binary = nginx or find_tool("nginx")
        if binary is None:
            raise RuntimeError(
                f"nginx is not installed (Debian: apt-get install {NGINX_PACKAGE}; "
                "the benchmarks install it themselves when run as root)"
            )
        _remove_stale()
        base = SHM if SHM.is_dir() else Path(tempfile.gettempdir())
        last = ""
        for _attempt in range(3):  # a free port may be taken before nginx binds it
            root = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=base))
            (root / "data").mkdir()
            (root / "body").mkdir()
            port = free_port()
            (root / "nginx.conf").write_text(_config(root, port))
            proc = subprocess.Popen(
                [binary, "-p", str(root), "-c", str(root / "nginx.conf")],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=die_with_parent,  # one prctl in the child, no locks taken
            )
            sink = cls(f"http://127.0.0.1:{port}", root, proc)
            try:
                sink._wait_ready(port)
                return sink
            except RuntimeError as exc:
                last = str(exc)
                sink.stop()
        raise RuntimeError(f"nginx did not start: {last}")

    def _wait_ready(self, port: int) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = (
                    (self.root / "error.log").read_text(errors="replace")
                    if (self.root / "error.log").exists()
                    else ""
                )
                raise RuntimeError((err or log).strip()[-400:] or f"exit {self.proc.returncode}")
            self.workers = children_of(self.proc.pid)
            if self.workers:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), timeout=1),
                ):
                    return
            time.sleep(0.01)  # polling the observed state: the port accepts and a worker runs
        raise RuntimeError(f"no answer on port {port} within {_START_TIMEOUT_S:.0f} s")

    def cpu_s(self) -> float:
        """CPU seconds of the master and its worker so far."""
        return sum(process_cpu_s(pid) for pid in (self.proc.pid, *self.workers))

    def stored(self) -> int:
        """How many objects the sink holds."""
        return sum(len(files) for _dir, _subdirs, files in os.walk(self.root / "data"))

    def clear(self) -> None:
        """Forget every stored object (between runs, outside any measurement)."""
        data = self.root / "data"
        for entry in os.scandir(data):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    def stop(self) -> None:
        """Stop nginx by its PID (TERM, then KILL after 5 s) and remove the folder."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the master stops its worker, then exits
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                for pid in self.workers:  # orphaned by the KILL: only if it is still ours
                    if _is_nginx_worker(pid):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> NginxSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
