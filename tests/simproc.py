"""Test kit: the emulator in its own process, and `ingest` commands run as a user would.

`SimProcess` starts `ingest sim` on a free loopback port and reads what it
recorded through its `/_sim` routes; `run_ingest` runs the real command line
in a child process with a clean environment. `read_journal` runs `ingest
status` or `ingest export` in this process (the same code and output, without
an interpreter's start-up): for the checks a test ends with, not for tests of
those commands.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
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
def sim_process(*args: str, env: dict[str, str] | None = None) -> Iterator[SimProcess]:
    """`ingest sim` with `args` (and `env`, else this process's), in its own process, stopped at exit.

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
            env=env,
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
            stop_process(proc)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout`; reaped either way."""
    proc.terminate()
    try:
        proc.communicate(timeout=timeout)
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


def read_journal(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """`ingest status|export ARGS` in this process: what the command prints, and its exit code.

    A test's closing check reads a journal several times; a child process for
    each costs an interpreter start-up (0.3-0.5 s of CPU on this machine) for
    what these commands do in milliseconds. Both only read the journal (and the
    manifest it names): no provider key, setting or network is involved.
    """
    from ingest.cli.main import main

    if not args or args[0] not in ("status", "export"):
        raise ValueError(f"read_journal runs status or export, not {list(args)[:1]}")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(ingest_cmd(*args), code, out.getvalue(), err.getvalue())


def json_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
