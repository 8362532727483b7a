"""The benchmarks' child processes: servers started and stopped by PID, CPU from /proc, tools.

Owns `ServerProcess` (a child that prints one ready line with its URL, then
serves until SIGTERM: the benchmark emulator and the signer), the CPU
readings of a live process (`process_cpu_s`, `children_of`), the
parent-death signal every such child gets (`die_with_parent`), a free
loopback port, and `find_tool`/`ensure_tool` (a tool on PATH, installed with
apt-get when missing and run as root).

Invariants: a child is stopped by its own PID (TERM, then KILL after a
bounded grace) on every exit path of its ``with`` block, and dies with the
benchmark if that is killed outright (Linux ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Self


def find_tool(tool: str) -> str | None:
    """`tool` on PATH or in the sbin folders (nginx lives in /usr/sbin)."""
    found = shutil.which(tool)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = Path(folder) / tool
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def ensure_tool(tool: str, package: str | None = None) -> str | None:
    """`tool`'s path; installs `package` with apt-get first when missing and run as root.

    Says on stderr that it installs. None when the tool is still missing
    (not root, no apt-get, or the install failed).
    """
    found = find_tool(tool)
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"  installing {package or tool} with apt-get …", file=sys.stderr)
    install = ["apt-get", "install", "-y", "-qq", package or tool]
    if subprocess.run(install, capture_output=True, check=False, env=env).returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False, env=env)
        subprocess.run(install, capture_output=True, check=False, env=env)
    return find_tool(tool)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process, from ``/proc/PID/stat`` (0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    """The live child processes of `pid` (a scan of ``/proc``)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:
    """In a child before exec: SIGTERM it when this process dies (Linux ``PR_SET_PDEATHSIG``)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


@dataclass
class ServerProcess:
    """A server in its own process; `spawn` starts it and waits for its ready line."""

    base_url: str
    proc: subprocess.Popen[str]

    @classmethod
    def spawn(cls, args: list[str], ready_prefix: str, what: str) -> Self:
        """Start `args`; the URL after `ready_prefix` on its first stdout line."""
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent,  # one prctl in the child, no locks taken
        )
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        if not first.startswith(ready_prefix):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise RuntimeError(f"the {what} did not start: {first!r} {err.strip()[-500:]}")
        return cls(first[len(ready_prefix) :], proc)

    def cpu_s(self) -> float:
        """User + system CPU seconds the server has used so far."""
        return process_cpu_s(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
