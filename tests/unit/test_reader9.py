"""Faults the second reader of session 9 found in that session's changes, each proved here."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import time
from pathlib import Path

import pytest

import ingest
from ingest import convert_pool
from ingest.config import DEFAULT_PROVIDERS
from ingest.item import Item
from ingest.namelimit import NameLimit
from ingest.providers.autoenhance import AutoenhanceProvider
from ingest.sim import SimSettings, serve
from tests.images import make_image
from tests.unit import test_autoenhance_held as held


def _item(n: int) -> Item:
    return Item(key=f"k{n}", path=Path(f"/d/{n}/img.png"), line=n)


def test_a_held_item_passes_at_any_moment_after_the_time_its_line_gives() -> None:
    # The one earlier create ages out at 40 s past a minute: a line saying "after HH:MM" of
    # that minute sends the user back while it is still held (for up to 59 s).
    minute = (int(time.time()) // 60) * 60
    created = minute - 3600 + 40
    held = NameLimit(1, "autoenhance", earlier=lambda name: [created], now=lambda: minute)
    refused = held.check(_item(1))
    assert refused is not None
    stated = re.search(r"it can go after ((?:\d{4}-\d\d-\d\d )?\d\d:\d\d)", refused.reason)
    assert stated is not None
    day = time.strftime("%Y-%m-%d ", time.localtime(minute))
    told = time.mktime(time.strptime(day + stated[1][-5:], "%Y-%m-%d %H:%M"))
    told += 86400 if told < minute else 0  # past midnight
    for after in (told + 1, told + 30, told + 59):
        again = NameLimit(
            1, "autoenhance", earlier=lambda name: [created], now=functools.partial(float, after)
        )
        assert again.check(_item(1)) is None, (stated, after - minute)


@pytest.mark.anyio
async def test_a_retried_tidy_does_not_count_the_orders_names_twice(tmp_path: Path) -> None:
    # `calls.api` retries `tidy` whole when a DELETE of a waiting image gets a 503 or its
    # connection drops: each listing added the order's creates again, so 15 earlier
    # img.png creates held back items after 15 more (the API takes 30).
    manifest = held.same_names(tmp_path, 15)
    journal = tmp_path / "journal"
    async with serve(SimSettings(api_keys=frozenset({held.KEY}))) as server:
        psettings = dataclasses.replace(DEFAULT_PROVIDERS["autoenhance"], base_url=server.base_url)
        params = AutoenhanceProvider.run_params(psettings, {})
        async with held.adapter(server, params) as first:
            assert (await held.run(first, manifest, journal)).counters.done == 15
        async with held.adapter(server, params) as second:
            await second.tidy()
            await second.tidy()  # the retry
            assert len(second.names_used("img.png")) == 15


def test_stopping_a_converter_process_already_dropped_writes_nowhere(tmp_path: Path) -> None:
    # `Converter.stop` takes the process under its lock and stops it outside it; the
    # conversion's thread may drop (close) it in between. Its wake pipe's fd numbers are
    # then free, and the next file opened gets one: the stop wrote a 0 byte into it.
    process = convert_pool.take()
    woken = process._pipe._wake[1]
    convert_pool.drop(process)
    other = tmp_path / "opened-next"
    fd = os.open(other, os.O_WRONLY | os.O_CREAT)
    try:
        os.dup2(fd, woken)  # as the next open would have been numbered
        process.stop()
    finally:
        os.close(woken)
        os.close(fd)
    assert other.read_bytes() == b""


def test_a_process_stopped_after_it_was_given_back_is_not_taken_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `Converter.stop` may stop a process just after its conversion ended and gave it back
    # (the stop took it from `_busy` first). Killed, it may not have exited yet (under
    # SCHED_IDLE its exit waits for a CPU): `take` handed it to the next conversion, whose
    # first read the stop's wake ended, failing that item as convert_failed.
    process = convert_pool.take()
    convert_pool.give(process)
    real_kill = process.proc.kill
    monkeypatch.setattr(process.proc, "kill", lambda: None)  # not acted on yet
    process.stop()
    taken = convert_pool.take()
    try:
        assert taken is not process
    finally:
        real_kill()
        convert_pool.drop(process)
        convert_pool.drop(taken)


def test_an_uploaded_image_whose_entry_turns_bad_stays_done(tmp_path: Path) -> None:
    # A keyed reader rejection (a caption file no longer UTF-8; a damaged Parquet row group,
    # now keyed by row) was journaled `bad` over the item's `done`: the upload left the
    # journal's counts and its export, and once the entry was fixed it was uploaded again.
    make_image(tmp_path / "a.png", "png", 128, 1)
    (tmp_path / "a.txt").write_text("a cat")
    make_image(tmp_path / "b.png", "png", 128, 2)
    assert ingest.upload_sync(tmp_path, provider="novita", sim=True).done == 2
    (tmp_path / "a.txt").write_bytes(b"caf\xe9")
    again = ingest.upload_sync(tmp_path, provider="novita", sim=True)
    assert (again.done, again.rejected, again.this_run.skipped) == (2, 0, 2)
