"""Test kit: the emulator in its own process, and `ingest` commands run as a user would.

`SimProcess` starts `ingest sim` on a free loopback port and reads what it
recorded through its `/_sim` routes; `run_ingest` runs the real command line
in a child process with a clean environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INGEST = [sys.executable, "-m", "ingest"]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class SimProcess:
    base_url: str
    proc: subprocess.Popen[str]

    def get(self, route: str) -> Any:
        with urllib.request.urlopen(self.base_url + route, timeout=30) as resp:
            return json.loads(resp.read())

    def objects(self) -> list[dict[str, Any]]:
        return list(self.get("/_sim/objects")["objects"])

    def stats(self) -> dict[str, Any]:
        return dict(self.get("/_sim/stats"))

    def set_faults(self, plan: str) -> None:
        req = urllib.request.Request(
            self.base_url + "/_sim/faults", data=plan.encode(), method="PUT"
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()


@contextmanager
def sim_process(*args: str) -> Iterator[SimProcess]:
    """`ingest sim` with `args`, in its own process, stopped at exit.

    Its stderr goes to a temporary file, not a pipe: nobody reads a pipe while
    the test runs, and once 64 KiB of log (say, aiohttp's tracebacks for
    clients killed mid-request) fill it, the emulator blocks on the write and
    every request hangs.
    """
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [*INGEST, "sim", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline().strip()
            prefix = "ingest sim listening on "
            if not first.startswith(prefix):
                proc.kill()
                proc.communicate(timeout=10)
                log.seek(0)
                raise RuntimeError(f"ingest sim did not start: {first!r} {log.read()}")
            yield SimProcess(first[len(prefix) :], proc)
        finally:
            proc.terminate()
            try:
                proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def ingest_env(**keys: str) -> dict[str, str]:
    """A child environment without any provider key unless given here."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_SECRET"))}
    env.update(keys)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def ingest_cmd(*args: str) -> list[str]:
    return [*INGEST, *args]


def run_ingest(
    args: Sequence[str], *, env: dict[str, str], cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ingest_cmd(*args),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def json_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
