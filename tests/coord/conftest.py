"""Fixtures of the coordinator tests: one real redis-server per module, a fresh DB per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.coord.redisproc import RedisServer, redis_server

_names = itertools.count()


@pytest.fixture(scope="module")
def redis_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_proc: RedisServer) -> str:
    """A URL on its own database (0-15, round robin) of the module's server, emptied first."""
    import redis

    db = next(_names) % 16
    url = f"redis://127.0.0.1:{redis_proc.port}/{db}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url
