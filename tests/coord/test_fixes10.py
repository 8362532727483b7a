"""`ingest status --failed` of a shared run words each item as a journal's does (fixes10)."""

from __future__ import annotations

import anyio
import orjson

from ingest.api.wiring import endpoint_of
from ingest.cli.status import failure_line
from ingest.coord.connection import connect
from ingest.coord.names import RunKeys
from ingest.coord.plan import Layout, binding, plan_run
from ingest.coord.record import Record
from ingest.journal.report import Failure
from tests.coord.test_shared_run_cli import _main

FAILED = {"kind": "failed", "k": "cat-2", "line": 2, "action": "fail_item",
          "code": "invalid_image", "message": "the API refused the image"}  # fmt: skip
REJECTED = {"kind": "rejected", "k": "/data/3.png", "line": 3,
            "reason": "not an image (content looks like text): /data/3.png"}  # fmt: skip


async def _run(url: str) -> None:
    async with connect(url) as conn:
        keys = RunKeys("r")
        layout = Layout("d" * 64, 3, ((1, 3, 3),))
        await plan_run(conn, keys, layout, binding(layout, "novita", endpoint_of("http://h"), {}))
        record = Record(conn, keys)
        await record.ship("done", [(1, orjson.dumps({"k": "a", "line": 1, "id": "1"}).decode())])
        await record.ship("failed", [(2, orjson.dumps(FAILED).decode())])
        await record.ship("rejected", [(3, orjson.dumps(REJECTED).decode())])


def test_a_shared_runs_failed_items_are_worded_as_a_journals(redis_url: str) -> None:
    # It printed "cat-2: line 2: failed invalid_image the API refused the image" and
    # "/data/3.png: line 3: rejected  not an image …" where a journal's status says this.
    anyio.run(_run, redis_url)
    code, out, err = _main("status", "--coordinator", redis_url, "--run-name", "r", "--failed")
    assert code == 0, err
    reason = str(REJECTED["reason"])
    assert out.splitlines() == [
        failure_line(
            Failure("cat-2", 2, "fail", "invalid_image", str(FAILED["message"]), "fail_item")
        ),
        failure_line(Failure("/data/3.png", 3, "bad", "not an image", reason)),
    ]
    assert out.splitlines() == [
        "line 2 cat-2: fail_item/invalid_image: the API refused the image",
        "line 3: rejected: not an image (content looks like text): /data/3.png",
    ]


def test_a_shared_runs_failed_json_lines_are_a_journals(redis_url: str) -> None:
    # fixes16: it printed the record's own fields ("kind", "k", "message") where a journal's
    # `status --failed --json` gives key, line, class, action, code, reason.
    anyio.run(_run, redis_url)
    where = ("--coordinator", redis_url, "--run-name", "r")
    code, out, err = _main("status", *where, "--failed", "--json")
    assert code == 0, err
    assert [orjson.loads(line) for line in out.splitlines()] == [
        {"key": "cat-2", "line": 2, "class": "fail", "action": "fail_item",
         "code": "invalid_image", "reason": "the API refused the image"},
        {"key": "/data/3.png", "line": 3, "class": "bad", "action": None,
         "code": "not an image (content looks like text)", "reason": str(REJECTED["reason"])},
    ]  # fmt: skip
