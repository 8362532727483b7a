"""The coordinator's Redis client: opened from a URL, checked, and called safely.

Owns how `ingest` talks to Redis: `connect` opens a `redis.asyncio` client
from a `redis://` URL with its own socket timeouts, and refuses a server that
could lose the record (`maxmemory-policy` other than `noeviction`: an evicting
Redis silently drops the done bitmap) or is older than 7.0 (XAUTOCLAIM's
three-element reply). `call` runs one command (or script) shielded from the
caller's cancellation, so a cancel scope can never fire mid-command and leave
the connection out of step (CVE-2023-28858/9); a lost connection is retried
with backoff for at most `down_s`, then `CoordinatorError` (exit 3) stops the
worker cleanly: what it has shipped stays shipped, and its chunks go back to
the others when its leases lapse.

The client announces no library name (`CLIENT SETINFO`): redis-py would
look its own version up in the installed packages' metadata for every new
connection (~9 ms of CPU each, and a pool opens one per concurrent caller) and
send two commands Redis 7.0 refuses.

Invariants: the URL's password never appears in a message (`describe`);
every Redis error that reaches a caller is a `CoordinatorError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio

from ingest.errors import ConfigError, IngestError, install_hint

if TYPE_CHECKING:
    from redis.asyncio import Redis

SOCKET_TIMEOUT_S = 10.0
DOWN_S = 30.0  # a coordinator unreachable this long stops the worker (exit 3)
MIN_VERSION = (7, 0)


class CoordinatorError(IngestError):
    """The coordinator cannot be used (down too long, or refused a command)."""


def describe(url: str) -> str:
    """A coordinator URL as messages show it: no user or password."""
    parts = urlsplit(url)
    if not parts.netloc:  # not a URL (a typo: "redis//:pw@h"): nothing up to an "@" shown
        return url.rpartition("@")[2]
    host = parts.hostname or "?"
    port = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
    return f"{parts.scheme}://{host}{':' + port if port else ''}{parts.path}"


def check_url(url: str) -> None:
    """A `ConfigError` for a coordinator URL that is not redis:// or rediss://."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigError(
            f"--coordinator must be a redis://HOST:PORT/DB URL, got {describe(url)!r}",
            key="coordinator",
        )
    try:
        parts.port  # noqa: B018 (urlsplit checks the port only when asked)
    except ValueError:
        raise ConfigError(
            f"the port is a number (redis://HOST:6379/0), got {describe(url)!r}",
            key="coordinator",
        ) from None
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ConfigError(
            f"the database is a number (redis://HOST:PORT/0), got {db!r}",
            key="coordinator",
        )


class Connection:
    """One worker's client, with the retrying, shielded `call`."""

    def __init__(self, client: Redis, url: str, *, down_s: float = DOWN_S) -> None:
        self.client = client
        self.url = url
        self._down_s = down_s
        self._reached = False  # the server answered once: a lost connection is then retried
        self._down_since: float | None = None  # when the current outage began (loop clock)

    async def call(self, command: Callable[[], Awaitable[Any]]) -> Any:
        """Run `command` shielded; a lost connection is retried for at most `down_s`.

        Its reply is `Any`: redis-py's own types are loose (bytes | str) where
        `decode_responses` makes them str; each caller names what it expects.
        """
        from redis.exceptions import AuthenticationError, RedisError
        from redis.exceptions import ConnectionError as LostConnection
        from redis.exceptions import TimeoutError as RedisTimeout

        delay = 0.05
        while True:
            try:
                with anyio.CancelScope(shield=True):
                    reply = await command()
                self._reached = True
                self._down_since = None
                return reply
            except AuthenticationError as exc:  # a ConnectionError to redis-py, but no outage
                raise CoordinatorError(
                    f"the coordinator {describe(self.url)} refused the login "
                    f"({str(exc).rstrip('.')}): check the password in its URL. Nothing was done"
                ) from None
            except (LostConnection, RedisTimeout, OSError) as exc:
                if not self._reached:  # never reached: stop at once, as an unreachable API does
                    raise CoordinatorError(
                        f"the coordinator {describe(self.url)} cannot be reached "
                        f"({type(exc).__name__}): is redis-server running there? Nothing was done"
                    ) from None
                # One outage, one bound: shared by every call, so the calls a worker makes
                # one after another as it stops (a flush after a failed take) add no wait.
                now = anyio.current_time()
                if self._down_since is None:
                    self._down_since = now
                if now >= self._down_since + self._down_s:
                    raise CoordinatorError(
                        f"the coordinator {describe(self.url)} was unreachable for "
                        f"{self._down_s:g}s ({type(exc).__name__}); what was shipped is kept: "
                        "run the same command again once it is back"
                    ) from None
                await anyio.sleep(delay)
                delay = min(1.0, delay * 2)
            except RedisError as exc:
                raise CoordinatorError(
                    f"the coordinator {describe(self.url)} refused a command: {exc}"
                ) from None

    async def check_server(self) -> None:
        """Refuse a server that could evict the record, or one older than Redis 7.0."""
        info: dict[str, Any] = await self.call(lambda: self.client.info("all"))
        version = str(info.get("valkey_version") or info.get("redis_version") or "0")
        numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if "valkey_version" not in info and numbers < MIN_VERSION:
            raise ConfigError(
                f"the coordinator {describe(self.url)} runs Redis {version}; "
                "ingest needs Redis >= 7.0 or Valkey",
                key="coordinator",
            )
        policy = str(info.get("maxmemory_policy", ""))
        if policy != "noeviction":
            raise ConfigError(
                f"the coordinator {describe(self.url)} has maxmemory-policy {policy or '?'}: "
                "an evicting Redis can silently drop the record of what is done; set "
                "`maxmemory-policy noeviction` (CONFIG SET maxmemory-policy noeviction)",
                key="coordinator",
            )


def _anonymous() -> dict[str, Any]:
    """The client options that turn `CLIENT SETINFO` off, in this redis-py's spelling."""
    import inspect

    from redis.asyncio.connection import AbstractConnection

    if "driver_info" in inspect.signature(AbstractConnection.__init__).parameters:
        return {"driver_info": None}  # redis-py >= 7.1 (lib_name is deprecated there)
    return {"lib_name": None, "lib_version": None}  # redis-py 5.0-7.0


@contextlib.asynccontextmanager
async def connect(url: str, *, down_s: float = DOWN_S) -> AsyncIterator[Connection]:
    """A checked connection to the coordinator at `url`, closed on exit."""
    check_url(url)
    try:
        from redis.asyncio import Redis
    except ImportError:
        raise ConfigError(
            f"--coordinator needs the redis client: {install_hint('redis')}"
        ) from None
    client = Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        decode_responses=True,
        **_anonymous(),
    )
    conn = Connection(client, url, down_s=down_s)
    try:
        await conn.check_server()
        yield conn
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()
