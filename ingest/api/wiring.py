"""The wiring of one run: settings, secrets, journal, sessions and adapter.

Owns the only place where the pieces meet, shared by `ingest.upload`, the
`ingest run` command, the benchmark client and the contract harness.

How it works: `prepare` does everything that can fail on bad input before
any work (settings and their keys, the provider's class, the key variables,
the manifest's first bytes) and returns a frozen `Plan`; `open_journal` locks
and replays the journal the plan names, binding it to this run (`binding`:
provider, manifest, endpoint, the provider's run-level values); `emulate`
starts the in-process emulator and points the plan at it; `connect` opens one
HTTP session per role and builds the adapter on them.

Invariants: nothing here prints, installs signal handlers or touches
`os.environ`; every error raised before `connect` is a `ConfigError`,
`ManifestError` or `JournalError`. A run whose binding differs from its
journal's is refused (`ingest.journal.check_binding`) before any request; the
endpoint bound is "emulator" for a run against the built-in emulator, else
the base URL without credentials, query or fragment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from ingest.api.arguments import check_endpoint
from ingest.config import (
    RunSettings,
    Settings,
    check_key_variable,
    load_settings,
    read_secrets,
    sendable_secret,
)
from ingest.errors import ConfigError

if TYPE_CHECKING:
    from ingest.journal import Header, Journal, Replay
    from ingest.manifest import ManifestFormat
    from ingest.providers.base import Provider, ProviderClass
    from ingest.providers.context import SharedNames
    from ingest.providers.settings import ProviderSettings
    from ingest.sim import SimServer, SimSettings

SIM_KEY = "sim-key"  # the key a run against the emulator sends when none is set

Keys = Literal["env", "sim", "none"]  # where `prepare` finds the API keys


@dataclass(frozen=True, slots=True)
class Plan:
    """One run, checked and resolved, before anything is opened."""

    provider: str
    cls: ProviderClass
    settings: Settings
    secrets: Mapping[str, str] = field(repr=False)  # API keys: never in a repr or a log
    manifest: Path
    journal: Path
    format: ManifestFormat | None = None

    @property
    def run(self) -> RunSettings:
        return self.settings.run

    @property
    def provider_settings(self) -> ProviderSettings:
        return self.settings.provider(self.provider)


def default_journal(manifest: Path, provider: str) -> Path:
    """Where a run's journal goes when none is named: beside the manifest."""
    if manifest.is_dir():
        return manifest / ".ingest" / f"{provider}.journal"
    return manifest.with_name(f"{manifest.name}.{provider}.journal")


def resolve_settings(
    provider: str, config: Path | str | Settings | None, overrides: Mapping[str, Any]
) -> Settings:
    """Defaults, then the TOML file `config`, then `overrides` (`[run]` or provider keys).

    A key that is neither a `[run]` key nor one of `provider`'s is a
    `ConfigError` naming every such key (and the provider a key belongs to).
    """
    if isinstance(config, Settings):
        if overrides:
            raise ConfigError(
                f"settings given both as a Settings object and as keywords "
                f"({', '.join(sorted(overrides))}); pass one or the other",
                key="config",
            )
        settings = config
        settings.provider(provider)  # a ConfigError if it has no section for it
        return settings
    run_keys = {f.name for f in dataclasses.fields(RunSettings)}
    provider_keys = {f.name for f in dataclasses.fields(load_settings().provider(provider))}
    unknown = sorted(set(overrides) - run_keys - provider_keys)
    if unknown:
        raise ConfigError(_unknown_message(provider, unknown, run_keys | provider_keys))
    run = {k: v for k, v in overrides.items() if k in run_keys}
    own = {k: v for k, v in overrides.items() if k not in run_keys}
    path = Path(config) if config is not None else None
    return load_settings(path, run_overrides=run, provider_overrides={provider: own} if own else {})


def _unknown_message(provider: str, unknown: list[str], known: set[str]) -> str:
    from ingest.config import _did_you_mean, elsewhere

    def said(key: str) -> str:
        guess = _did_you_mean(key, known).removesuffix(" ")  # the CLI's config-file hint
        why = elsewhere(key, provider) or guess
        return f"{key} ({why})" if why else key

    return f"unknown settings for {provider}: {', '.join(map(said, unknown))}"


def prepare(
    source: str | os.PathLike[str],
    *,
    provider: str,
    journal: str | os.PathLike[str] | None = None,
    config: Path | str | Settings | None = None,
    settings: Mapping[str, Any] | None = None,
    format: ManifestFormat | None = None,
    keys: Keys = "env",
) -> Plan:
    """Check a run's inputs and resolve its paths; opens nothing.

    Raises `ConfigError` (a setting, the provider, a key variable) or
    `ManifestError` (the manifest as a whole cannot be read). `keys` says how
    the API keys are found: "env", from the variables the settings name (a
    `ConfigError` if one is unset); "sim", from them or else a placeholder
    (the emulator takes any key); "none", not at all (a dry run calls no API).
    """
    from ingest.item import Item
    from ingest.manifest.probe import refuse_stream
    from ingest.manifest.reader import refuse_empty
    from ingest.providers import provider_class

    cls: ProviderClass = provider_class(provider)
    resolved = resolve_settings(provider, config, settings or {})
    psettings = resolved.provider(provider)
    check_endpoint(provider, resolved)
    if resolved.run.convert:  # refused before a journal is written (exit 2: nothing written)
        from ingest.convert import require_pillow

        require_pillow()
    for name in cls.key_envs:  # a key pasted where its variable's name belongs, in any mode
        check_key_variable(provider, name, getattr(psettings, name))
    refuse_stream(source)  # named as given, before resolving names a pipe /proc/PID/fd/pipe:[N]
    manifest = Path(source).resolve()
    journal_path = Path(journal) if journal is not None else default_journal(manifest, provider)
    recorded = recorded_format(journal_path, provider)
    if format is None:  # a resume reads the manifest as its journal's run did
        format = recorded
    elif recorded is not None and format != recorded:  # before the manifest is read as given
        from ingest.journal.maintenance import format_mismatch

        raise format_mismatch(journal_path.resolve(), recorded, format)
    first = refuse_empty(manifest, format)  # probes now: a ManifestError (or nothing to upload)
    if isinstance(first, Item) and first.url is not None:  # s3:// without boto3: refused now
        from ingest.remote import require_boto3

        require_boto3(first.url)
    if keys == "none":
        secrets: dict[str, str] = {}
    elif keys == "sim":
        secrets = {
            field: _sim_secret(provider, field, getattr(psettings, field)) for field in cls.key_envs
        }
    else:
        secrets = read_secrets(provider, psettings, cls.key_envs)
    return Plan(
        provider=provider,
        cls=cls,
        settings=resolved,
        secrets=secrets,
        manifest=manifest,
        journal=journal_path.resolve(),
        format=format,
    )


def recorded_format(journal: Path, provider: str) -> ManifestFormat | None:
    """The `format` an earlier run of `journal` forced (its header's ``bind``), else None.

    A resume given no `format` reads the manifest as that run did, as it keeps a
    recorded order or model (`binding`); one given another is refused (`prepare`,
    before the manifest is probed as the wrong format). A journal that cannot be read
    yet is left to its opening to name.
    """
    from ingest.errors import JournalError
    from ingest.journal import peek_header
    from ingest.manifest.probe import FORMATS

    try:
        header = peek_header(journal)
    except JournalError:
        return None
    if header is None or header.provider != provider:
        return None
    recorded = header.bind.get("format")
    return next((f for f in FORMATS if f == recorded), None)


def _sim_secret(provider: str, field_name: str, variable: str) -> str:
    """The emulator accepts any key: the variable's value if set, else a placeholder."""
    value = os.environ.get(variable, "").strip() if variable else ""
    if not value:
        return SIM_KEY
    return sendable_secret(value, provider, field_name, variable)


def endpoint_of(base_url: str) -> str:
    """A base URL as a journal binds it: scheme and host lower-case, no trailing slash,
    and nothing that can hold a secret (user info, query, fragment)."""
    parts = urlsplit(base_url.strip())
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # not a number: kept as written, it cannot match another
        port = None
        host = parts.netloc.rpartition("@")[2].lower()
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


def binding(plan: Plan, *, emulator: bool, previous: Header | None = None) -> Header:
    """The header a run of `plan` binds its journal to (`previous`: the journal's, if any).

    A resume keeps the run-level values the provider takes from `previous`
    when the settings name none (a model or order id).
    """
    from ingest.journal import EMULATOR, Header

    bound = previous.bind if previous and previous.provider == plan.provider else {}
    bind = plan.cls.run_params(plan.provider_settings, bound)
    if plan.format is not None:  # what status and export read the manifest as (`manifest_entries`)
        bind = {**bind, "format": plan.format}
    return Header(
        provider=plan.provider,
        manifest=str(plan.manifest),
        bind=bind,
        created=time.time(),
        endpoint=EMULATOR if emulator else endpoint_of(plan.provider_settings.base_url),
    )


def open_journal(
    plan: Plan, *, force: bool = False, emulator: bool = False
) -> tuple[Journal, Replay, tuple[str, ...]]:
    """Lock and replay (or create) the plan's journal, bound to this run.

    `emulator`: the run goes to the built-in emulator. A journal bound to
    another provider, endpoint or run-level value is a `JournalMismatch`; to
    another manifest, one unless `force`. Also returns notes to show once:
    the binding fields an older journal does not record, left unchecked, and a
    `--format` the journal's runs were not given, when it is not the one detected.
    """
    from ingest.journal import Journal, peek_header, unrecorded
    from ingest.journal.maintenance import describe_endpoint
    from ingest.manifest.probe import manifest_format

    previous = peek_header(plan.journal)
    header = binding(plan, emulator=emulator, previous=previous)
    journal, replay = Journal.open(
        plan.journal, header, force=force, sync_interval=plan.run.journal_sync_interval_s
    )
    missing = unrecorded(replay.header, header)
    notes = []
    if "format" in missing:  # recorded only when given: its runs read the manifest as detected
        missing = tuple(name for name in missing if name != "format")
        detected = manifest_format(plan.manifest)
        if header.bind["format"] != detected:
            notes.append(
                f"journal {plan.journal} records no --format (its runs read the manifest as "
                f"detected, {detected}), so it is not checked: this run reads it as "
                f"{header.bind['format']}"
            )
    if missing:
        values = [
            describe_endpoint(header.endpoint)
            if name == "endpoint"
            else f"{name} {header.bind[name]!r}"
            for name in missing
        ]
        they = "they are" if len(missing) > 1 else "it is"
        notes.append(
            f"journal {plan.journal} does not record its {', '.join(missing)} (written by an "
            f"older ingest), so {they} not checked: this run uses {', '.join(values)}"
        )
    return journal, replay, tuple(notes)


def check_journal(plan: Plan, *, emulator: bool, force: bool = False) -> None:
    """Refuse what `open_journal` would refuse, reading only the header.

    A `ConfigError` for a run-level value the run needs and neither the
    settings nor the journal give (a Scenario model), else a `JournalMismatch`.
    """
    from ingest.journal import check_binding, peek_header

    previous = peek_header(plan.journal)
    wanted = binding(plan, emulator=emulator, previous=previous)
    if previous is not None:
        check_binding(plan.journal, previous, wanted, force)


def sim_settings(**overrides: Any) -> SimSettings:
    """The emulator a `sim=True` run starts: any model a Scenario run names exists."""
    from ingest.sim import SimSettings
    from ingest.sim.settings import ScenarioSimSettings

    return SimSettings(**{"scenario": ScenarioSimSettings(auto_create_models=True), **overrides})


@contextlib.asynccontextmanager
async def emulate(plan: Plan, settings: SimSettings) -> AsyncIterator[tuple[Plan, SimServer]]:
    """Serve the emulator in this loop; yields the plan pointed at it."""
    from ingest.sim import serve

    async with serve(settings) as sim:
        psettings = plan.provider_settings
        # The path of the real base URL (Scenario's `/v1`) is kept under the emulator.
        base_url = sim.base_url + urlsplit(psettings.base_url).path.rstrip("/")
        providers = {
            **plan.settings.providers,
            plan.provider: dataclasses.replace(psettings, base_url=base_url),
        }
        yield (
            dataclasses.replace(
                plan, settings=dataclasses.replace(plan.settings, providers=providers)
            ),
            sim,
        )


@contextlib.asynccontextmanager
async def connect(
    cls: ProviderClass,
    psettings: ProviderSettings,
    run: RunSettings,
    secrets: Mapping[str, str],
    params: Mapping[str, str],
    names: SharedNames | None = None,
) -> AsyncIterator[Provider]:
    """The adapter on its own API and storage sessions (closed on exit); `names`: shared counts."""
    from ingest.http import Timeouts, api_session, storage_session
    from ingest.providers.context import Context

    timeouts = Timeouts(connect=run.connect_timeout_s, read=run.read_timeout_s)
    async with (
        api_session(
            psettings.base_url.rstrip("/") + "/",
            cls.auth_headers(secrets),
            timeouts,
            run.api_concurrency,
            run.put_transport,
        ) as api,
        storage_session(timeouts, run.put_concurrency, run.put_transport) as storage,
    ):
        yield cls(
            Context(
                api=api,
                storage=storage,
                settings=psettings,
                params=dict(params),
                allow_insecure_http=run.allow_insecure_http,
                names=names,
            )
        )
