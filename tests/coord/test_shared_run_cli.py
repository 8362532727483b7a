"""The commands of a shared run, at their edges, in process against a real redis-server.

`retry-failed` of a run with nothing failed says so before any key is asked
for; a worker given a `--chunk-lines` the run was not planned with says once
that it is ignored (the plan rules, as the binding treats the chunk count);
`status`, `export` and `retry-failed` with a run name the coordinator does
not have, a coordinator that is down, or an output closed early (`| head -1`)
each end with one line (or none) and their exit code.
"""

from __future__ import annotations

import io
import os
import socket
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TextIO

import anyio
import orjson
import pytest

from ingest.api.wiring import endpoint_of
from ingest.coord.connection import connect
from ingest.coord.names import RunKeys
from ingest.coord.plan import binding, plan_run, read_layout
from ingest.coord.record import Record
from tests.images import make_dataset, write_jsonl_manifest

ITEMS = 6
NOWHERE = "http://127.0.0.1:9"  # the provider: never called, every entry is done already
COMMANDS = [("status",), ("status", "--failed"), ("export",), ("retry-failed",)]


def _main(*args: str, stdout: TextIO | None = None) -> tuple[int, str, str]:
    from ingest.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout or out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


async def _done_run(
    url: str, name: str, manifest: Path | None, chunk_lines: int, made_up: int = 2000
) -> None:
    """A run planned as a worker would plan `manifest` (else one of `made_up` entries),
    every entry done but, without a manifest, every other one failed."""
    async with connect(url) as conn:
        keys = RunKeys(name)
        if manifest is not None:
            layout = read_layout(manifest, None, chunk_lines)[0]
        else:
            from ingest.coord.plan import Layout

            layout = Layout("d" * 64, made_up, ((1, made_up, made_up),))
        bound = binding(layout, "novita", endpoint_of(NOWHERE), {})
        await plan_run(conn, keys, layout, bound)
        record = Record(conn, keys)
        for first in range(1, layout.entries + 1, 256):
            lines = range(first, min(layout.entries, first + 255) + 1)
            failed = [n for n in lines if manifest is None and n % 2 == 0]
            await record.ship("done", [(n, orjson.dumps({"k": f"item-{n - 1:06d}", "line": n,
                                        "id": str(n), "size": 1}).decode())
                                       for n in lines if n not in failed])  # fmt: skip
            await record.ship("failed", [(n, orjson.dumps({"kind": "failed", "k": f"k{n}",
                                          "line": n, "code": "http_500", "message": "m"}).decode())
                                         for n in failed])  # fmt: skip


def _worker(manifest: Path, url: str, *flags: str) -> tuple[int, str]:
    code, _, err = _main("run", str(manifest), "--provider", "novita", "--base-url", NOWHERE,
                         "--coordinator", url, "--plain", *flags)  # fmt: skip
    return code, err


@pytest.fixture
def manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NOVITA_API_KEY", "k-shared")
    return write_jsonl_manifest(make_dataset(tmp_path / "img", ITEMS, max_size=1024),
                                tmp_path / "m.jsonl")  # fmt: skip


@pytest.mark.parametrize(
    ("planned", "given", "said"),
    [
        (2, "5", "run 'novita-m' was planned in chunks of 2 entries: this worker's "
                 "--chunk-lines 5 is ignored (the worker that plans a run sets its chunks)"),
        (10, "3", "run 'novita-m' was planned as one chunk of 6 entries: this worker's "
                  "--chunk-lines 3 is ignored"),
        (2, "2", None),
        (10, "20", None),  # one chunk either way
        (2, None, None),  # not given: nothing to say
    ],
)  # fmt: skip
def test_a_joiner_says_once_that_its_chunk_lines_is_ignored(
    manifest: Path, redis_url: str, planned: int, given: str | None, said: str | None
) -> None:
    anyio.run(_done_run, redis_url, "novita-m", manifest, planned)
    code, err = _worker(manifest, redis_url, *(["--chunk-lines", given] if given else []))
    assert code == 0, err
    assert "(joined it)" in err
    assert err.count("--chunk-lines") == (1 if said else 0), err
    if said:
        assert said in err


def test_retry_failed_with_nothing_failed_needs_no_key(
    manifest: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    anyio.run(_done_run, redis_url, "novita-m", manifest, 2)
    assert _worker(manifest, redis_url)[0] == 0  # finishes (acknowledges) every chunk
    monkeypatch.delenv("NOVITA_API_KEY")
    code, out, err = _main("retry-failed", "--coordinator", redis_url, "--run-name", "novita-m")
    assert (code, out) == (0, "")
    assert err == "nothing failed in run 'novita-m' (6 of 6 done): nothing to retry\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_a_run_name_the_coordinator_does_not_have(command: tuple[str, ...], redis_url: str) -> None:
    anyio.run(_done_run, redis_url, "there", None, 0, 1)
    code, out, err = _main(*command, "--coordinator", redis_url, "--run-name", "wrong")
    where = redis_url.removeprefix("redis://")
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"ingest: error: no run named 'wrong' on redis://{where} (runs there: there): check "
        "--run-name (each worker prints its run's name at start)"
    ]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_coordinator_that_is_down(command: tuple[str, ...]) -> None:
    with socket.socket() as s:  # a free port, nothing listening once it is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    code, out, err = _main(*command, "--coordinator", url, "--run-name", "r")
    assert (code, out) == (3, "")
    assert len(err.splitlines()) == 1 and f"the coordinator {url} cannot be reached" in err


@pytest.mark.parametrize(
    "command", [("status", "--failed"), ("status", "--failed", "--json"), ("export",),
                ("export", "--format", "csv")]
)  # fmt: skip
def test_an_output_closed_early(command: tuple[str, ...], redis_url: str) -> None:
    """`ingest status --coordinator … --failed | head -1`: exit 0 as for a journal, no error.

    2,000 entries (1,000 done, 1,000 failed): more than one buffer's write. (`retry-failed`
    writes its lines to stderr: `--json`'s, the run's reporter, exits 141 as `run` does.)"""
    anyio.run(_done_run, redis_url, "big", None, 0)
    read, write = os.pipe()
    os.close(read)
    closed = os.fdopen(write, "w")
    code, _, err = _main(*command, "--coordinator", redis_url, "--run-name", "big",
                         stdout=closed)  # fmt: skip
    closed.close()  # main pointed it at /dev/null once the pipe broke: nothing left to fail
    assert code == 0 and "error" not in err and "Traceback" not in err, err


def test_a_worker_whose_output_is_closed_drains_and_exits_141(
    manifest: Path, redis_url: str
) -> None:
    """Newcomer7: `ingest run … --coordinator URL --json | head -1` said "finishing the
    uploads in flight, then stopping", then leased and uploaded every chunk of the run and
    exited 0. A worker now drains as on a first Ctrl-C and exits 141, as a journal's run does
    (here before its first chunk: the provider, nothing listening, is never called)."""
    read, write = os.pipe()
    os.close(read)
    closed = os.fdopen(write, "w")
    code, _, err = _main("run", str(manifest), "--provider", "novita", "--base-url", NOWHERE,
                         "--coordinator", redis_url, "--json", stdout=closed)  # fmt: skip
    closed.close()
    assert code == 141, err
    assert "stopped because its output was closed; run 'novita-m': 0 of 6 done" in err, err
    assert "Traceback" not in err
