"""The coordinator's connection: the server checks and the down bound, on a real redis-server."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio
import redis.exceptions

from ingest.coord.connection import (
    Connection,
    CoordinatorError,
    check_url,
    connect,
    describe,
)
from ingest.errors import ConfigError

pytestmark = pytest.mark.anyio


async def test_noeviction_is_required(redis_url: str) -> None:
    async with connect(redis_url) as conn:  # the fixture's server: noeviction
        assert await conn.call(lambda: conn.client.ping())
    admin = redis.Redis.from_url(redis_url)
    admin.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(ConfigError, match="maxmemory-policy allkeys-lru"):
            async with connect(redis_url):
                pass
    finally:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.close()


async def test_a_coordinator_never_reached_stops_at_once() -> None:
    # A port nobody listens on: nothing to wait for (newcomer finding: it waited 30 s).
    url = "redis://:hunter2@127.0.0.1:9/0"
    with pytest.raises(CoordinatorError, match=r"cannot be reached .*Nothing was done") as caught:
        async with connect(url, down_s=3600):
            pass
    assert "hunter2" not in str(caught.value)


async def test_a_coordinator_down_longer_than_the_bound_stops() -> None:
    # Reached once, then lost: retried for down_s, then one clear error.
    answers: list[object] = ["PONG"]
    tries = 0

    async def command() -> object:
        nonlocal tries
        tries += 1
        if answers:
            return answers.pop()
        raise redis.exceptions.ConnectionError("Connection refused")

    conn = Connection(redis.asyncio.Redis(), "redis://:hunter2@127.0.0.1:9/0", down_s=0.2)
    assert await conn.call(command) == "PONG"
    with pytest.raises(CoordinatorError, match=r"unreachable for 0.2s") as caught:
        await conn.call(command)
    assert "hunter2" not in str(caught.value)
    # The same outage: a call after it gave up (the flush of a stopping worker) waits no
    # second bound (newcomer finding: a worker stopped after 61 s where the bound was 30 s).
    before = tries
    with pytest.raises(CoordinatorError, match=r"unreachable for 0.2s"):
        await conn.call(command)
    assert tries == before + 1  # tried once, not retried for another 0.2 s


async def test_a_refused_password_is_named_as_such() -> None:
    # Newcomer finding: a wrong password said "cannot be reached (AuthenticationError):
    # is redis-server running there?" although the server was up and answering.
    async def command() -> object:
        raise redis.exceptions.AuthenticationError("invalid username-password pair")

    conn = Connection(redis.asyncio.Redis(), "redis://:hunter2@127.0.0.1:9/0", down_s=3600)
    with pytest.raises(
        CoordinatorError, match=r"refused the login \(invalid username-password pair\): check"
    ) as caught:
        await conn.call(command)
    assert "running there" not in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_bad_urls_are_one_line() -> None:
    with pytest.raises(ConfigError, match="redis://HOST:PORT/DB"):
        check_url("http://127.0.0.1:6379")
    with pytest.raises(ConfigError, match="database is a number"):
        check_url("redis://127.0.0.1:6379/x")
    assert describe("redis://user:secret@h:1/2") == "redis://h:1/2"
    # Newcomer findings: a port that is no number was a ValueError traceback, and a
    # URL without "://" was shown as '://?redis//:pw@h:1/0', its password with it.
    with pytest.raises(ConfigError, match=r"port is a number .* got 'redis://h:abc/0'"):
        check_url("redis://:pw@h:abc/0")
    with pytest.raises(ConfigError, match="redis://HOST:PORT/DB URL, got 'h:1/0'") as caught:
        check_url("redis//:pw@h:1/0")
    assert "pw" not in str(caught.value)
    assert describe("rediss://[::1]:6380/0") == "rediss://::1:6380/0"


async def test_a_new_connection_reads_no_package_metadata(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # redis-py announced itself (CLIENT SETINFO, which Redis 7.0 refuses) on every new
    # connection, after reading its version from the package metadata (~9 ms of CPU each).
    from importlib import metadata

    looked_up: list[str] = []
    real = metadata.version

    def version(name: str) -> str:
        looked_up.append(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    async with connect(redis_url) as conn:
        pipe = conn.client.pipeline(transaction=False)  # a second pooled connection
        pipe.ping()
        await conn.call(pipe.execute)
        assert await conn.call(lambda: conn.client.ping())
    assert looked_up == []
