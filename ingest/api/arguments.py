"""The checks of a library caller's arguments, before anything is read or opened.

Owns what `open_upload` (and so `upload` and `upload_sync`) refuses about
the values it is given, as opposed to what they hold: an argument of the
wrong type, a provider passed by position, an API key passed as a setting, a
base URL that is not one `ingest` may talk to.

How it works: `check_call` looks at the arguments of one call (run by
`open_upload` before `wiring.prepare`); `check_positional` at the shape of a
call to `upload`/`upload_sync` (run by their wrapper, before the call is
forwarded); `check_endpoint` at the resolved settings (run by
`wiring.prepare`, so the CLI's run and dry run are checked the same way).

Invariants: every refusal is a `ConfigError` whose key names the argument
(or the setting) and whose message says what was expected; a setting's value
(it may be a pasted key) is never echoed. Importing this module imports
nothing of aiohttp.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.errors import ConfigError

if TYPE_CHECKING:
    from ingest.config import Settings

# What an observer must have: the `Observer` protocol's methods.
OBSERVER_EVENTS = ("item_done", "item_failed", "item_rejected", "item_changed")
FLAGS = ("force", "retry_failed", "reupload_changed")


def check_positional(function: str, args: tuple[Any, ...]) -> None:
    """`upload(source, provider=...)`: only the source is positional."""
    if len(args) > 1:
        raise ConfigError(
            f"{function}() takes the source alone by position, then keywords: "
            f"{function}({args[0]!r}, provider={args[1]!r}, ...)",
            key="provider",
        )


def check_call(
    *,
    source: object,
    journal: object,
    config: object,
    sim: object,
    observer: object,
    flags: Mapping[str, object],
    settings: Mapping[str, object],
    provider: str,
) -> None:
    """Refuse what `open_upload` cannot use, naming the argument; `flags` by their names."""
    _path("source", source, "a manifest file or a folder")
    if journal is not None:
        _path("journal", journal, "the journal's file")
    _config(config)
    _sim(sim)
    _observer(observer)
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigError(f"expected True or False, got {_shown(value)}", key=name)
    _secrets(settings, provider)


def check_coordinated(
    url: str | None,
    run_name: str | None,
    *,
    journal: object,
    sim: object,
    force: bool,
    wrap: object,
) -> None:
    """`coordinator=` and `run_name=`: a valid URL and name, none of what a worker cannot take."""
    from ingest.coord.connection import check_url
    from ingest.coord.names import check_run_name

    if url is None:
        raise ConfigError("run_name names a shared run: give coordinator= too", key="run_name")
    if not isinstance(url, str):
        raise ConfigError(f"expected a redis:// URL, got {_shown(url)}", key="coordinator")
    check_url(url)
    if run_name is not None:
        why = check_run_name(run_name) if isinstance(run_name, str) else f"got {_shown(run_name)}"
        if why:
            raise ConfigError(f"run_name {run_name!r}: {why}", key="run_name")
    given = {"journal": journal is not None, "sim": sim is not False, "force": force,
             "wrap": wrap is not None}  # fmt: skip
    for name, is_given in given.items():
        if is_given:
            raise ConfigError(
                f"{name}= cannot be used with coordinator= (workers share the coordinator's "
                "record, not a journal or an emulator of their own)",
                key=name,
            )


def check_endpoint(provider: str, settings: Settings) -> None:
    """The provider's base URL is one a run may call (`ingest.urls`)."""
    from ingest.urls import base_url_problem

    problem = base_url_problem(
        settings.provider(provider).base_url, allow_insecure=settings.run.allow_insecure_http
    )
    if problem is not None:
        raise ConfigError(problem, key=f"providers.{provider}.base_url")


def _path(name: str, value: object, what: str) -> None:
    if isinstance(value, bytes) or not isinstance(value, str | os.PathLike):
        raise ConfigError(
            f"expected a path ({what}: a str or a Path), got {_shown(value)}", key=name
        )


def _config(value: object) -> None:
    from ingest.config import Settings

    if value is None or isinstance(value, str | Path | Settings):
        return
    hint = "; pass settings as keywords (put_concurrency=8)" if isinstance(value, Mapping) else ""
    raise ConfigError(
        f"expected the path of a TOML file or an ingest.config.Settings, got {_shown(value)}{hint}",
        key="config",
    )


def _sim(value: object) -> None:
    if isinstance(value, bool):
        return
    from ingest.sim import SimSettings  # imports aiohttp: only for a value that is no bool

    if not isinstance(value, SimSettings):
        raise ConfigError(
            f"expected True, False or an ingest.sim.SimSettings, got {_shown(value)}", key="sim"
        )


def _observer(value: object) -> None:
    if value is None:
        return
    missing = [event for event in OBSERVER_EVENTS if not callable(getattr(value, event, None))]
    if missing:
        raise ConfigError(
            f"{_shown(value)} has no {', '.join(missing)}: subclass ingest.Observer "
            "and override the events you need",
            key="observer",
        )


def _secrets(settings: Mapping[str, object], provider: str) -> None:
    from ingest.config import DEFAULT_PROVIDERS, secret_hint

    section = DEFAULT_PROVIDERS.get(provider)
    for key in settings:
        hint = secret_hint(key, section if hasattr(section, f"{key}_env") else None)
        if hint is not None:
            raise ConfigError(f"API keys are read only from the environment: {hint}", key=key)


def _shown(value: object) -> str:
    """A value as an error shows it: its type, and its repr when short."""
    text = repr(value)
    return f"{type(value).__name__} {text}" if len(text) <= 40 else type(value).__name__
