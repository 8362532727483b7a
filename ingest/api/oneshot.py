"""The one-call front door: `await ingest.upload(...)` and `ingest.upload_sync(...)`.

Owns the two calls most users need. `upload` runs a manifest to its end in
the caller's event loop (asyncio; uvloop welcome, not required) and returns
a `Result`; `upload_sync` does the same from code without an event loop.
Both take `open_upload`'s arguments (derived from it, so the three cannot
drift apart); use `open_upload` itself to watch or steer a run.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec

from ingest.api.arguments import check_positional
from ingest.api.handle import Upload, open_upload
from ingest.api.result import Result

P = ParamSpec("P")


def _to_the_end(opener: Callable[P, Upload]) -> Callable[P, Coroutine[Any, Any, Result]]:
    """`opener`'s run, entered and waited for."""

    @functools.wraps(opener)
    async def upload(*args: P.args, **kwargs: P.kwargs) -> Result:
        check_positional("upload", args)
        async with opener(*args, **kwargs) as run:
            return await run.wait()

    _rename(upload, "upload", Result)
    upload.__doc__ = """Upload every image of `source` to `provider`; returns the run's `Result`.

    Takes `open_upload`'s arguments, e.g. ``await ingest.upload("photos.jsonl",
    provider="novita", put_concurrency=8)``. Runs in the caller's event loop
    and installs no signal handler. Raises `ConfigError`, `ManifestError` or
    `JournalError` before any work; a run that stops (a bad key, an outage, a
    full disk, also one met at the journal's opening) is returned, with its
    `stop_reason`, not raised. Cancelling the
    call stops the run; its journal keeps what was done, for a resume.
    """
    return upload


def _blocking(fn: Callable[P, Coroutine[Any, Any, Result]]) -> Callable[P, Result]:
    """`fn` run to its end in an event loop of its own."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> Result:
        check_positional("upload_sync", args)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "ingest.upload_sync() cannot run inside a running event loop "
                "(a notebook, a web app); use `await ingest.upload(...)` there"
            )
        import anyio

        from ingest.loop import backend_options

        return anyio.run(lambda: fn(*args, **kwargs), backend_options=backend_options())

    _rename(call, "upload_sync", Result)
    call.__doc__ = """`upload` for code without an event loop: the same arguments and `Result`.

    Runs an event loop of its own (uvloop if installed) until the upload
    ends. Inside a running loop it refuses with a `RuntimeError`.
    """
    return call


def _rename(fn: Callable[..., Any], name: str, returns: type) -> None:
    """Name `fn` and show its own return type (`functools.wraps` copied the opener's)."""
    fn.__name__ = fn.__qualname__ = name
    signature = inspect.signature(fn)
    fn.__signature__ = signature.replace(return_annotation=returns.__name__)  # type: ignore[attr-defined]
    fn.__module__ = __name__


upload = _to_the_end(open_upload)
upload_sync = _blocking(upload)
