"""`ingest config show` and `ingest config example`: settings as TOML, from the schema.

`show` prints the effective settings (defaults, config file, flags) with
secrets masked; `example` prints every key at its default, which is what
`config.example.toml` holds (a test keeps the two equal). Both are rendered
by `render` from the schema (`ingest.schema.keys`): each line carries the
key's help and flag, and each provider's section lists only its own keys.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from ingest.cli.options import add_settings_flags, settings_from_args
from ingest.config import ProviderSettings, RunSettings, Settings
from ingest.redact import key_variable_problem, keyish, preview
from ingest.schema import Key, keys

HEADER = """\
# ingest configuration. Copy to ./ingest.toml (read automatically) or pass --config FILE.
# Every key is shown with its default; the flag named at the end of its line wins over the file.
# Each [providers.NAME] section has only the keys that provider uses.
# Secrets never go in this file: it only names the environment variables that hold them.
# This file is the output of `ingest config example` (a test keeps them equal).
"""


def register(sub: Any) -> None:
    from ingest.providers import PROVIDER_NAMES

    p = sub.add_parser(
        "config",
        help="show the effective settings",
        description="Print the settings a command would use (defaults, config file, flags), secrets masked.",
    )
    sub2 = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = sub2.add_parser("show", help="print the effective settings as TOML")
    show.add_argument("--provider", choices=PROVIDER_NAMES, help="only this provider's section")
    add_settings_flags(show)
    show.set_defaults(func=run)
    example = sub2.add_parser(
        "example", help="print every key at its default, documented (config.example.toml)"
    )
    example.set_defaults(func=run_example)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def mask(value: str) -> str:
    """A secret shown as set or not, never its value."""
    return f"set ({len(value)} characters)" if value else "NOT SET"


def _comment(key: Key) -> str:
    flag = f"{key.flag} {'|'.join(key.choices)}" if key.choices else key.flag
    return f"{key.help} ({flag})"


def _section(title: str, value: RunSettings | ProviderSettings, secrets: bool) -> list[str]:
    """One TOML table: `key = value  # help (--flag)`, aligned.

    With `secrets`, each line of a key naming a secret variable (`key_envs`)
    also says whether that variable is set in this environment.
    """
    rows = []
    for key in keys(type(value)):
        current = getattr(value, key.name)
        comment = _comment(key)
        if isinstance(value, ProviderSettings) and key.name in value.key_envs and current:
            problem = key_variable_problem(key.name, current)
            if problem is not None:  # a pasted key: never shown beyond its first characters
                current, comment = preview(current), f"{comment}; ERROR: {problem}"
            elif secrets:
                held = os.environ.get(current, "")
                if not held and keyish(current):  # not set, and by its look the key itself
                    current = preview(current)
                comment += f"; ${current}: {mask(held)}"
        rows.append((f"{key.name} = {_toml(current)}", comment))
    width = max(len(text) for text, _ in rows)
    return [f"[{title}]", *(f"{text.ljust(width)}  # {comment}" for text, comment in rows)]


def render(
    settings: Settings, providers: Mapping[str, ProviderSettings], *, show_secrets: bool
) -> str:
    """`[run]` and the named provider sections as TOML, each key documented."""
    lines = _section("run", settings.run, False)
    for name, section in providers.items():
        lines += ["", *_section(f"providers.{name}", section, show_secrets)]
    return "\n".join(lines) + "\n"


def example_toml() -> str:
    """`config.example.toml`: every key at its default, providers in name order."""
    settings = Settings()
    providers = {name: settings.providers[name] for name in sorted(settings.providers)}
    return HEADER + "\n" + render(settings, providers, show_secrets=False)


def run_example(args: argparse.Namespace) -> int:
    import sys

    sys.stdout.write(example_toml())
    return 0


def run(args: argparse.Namespace) -> int:
    import sys

    from ingest.errors import ConfigError

    try:
        settings = settings_from_args(args, args.provider)
    except ConfigError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2
    names = [args.provider] if args.provider else sorted(settings.providers)
    providers = {name: settings.providers[name] for name in names}
    sys.stdout.write(render(settings, providers, show_secrets=True))
    problems = [
        problem
        for name, section in providers.items()
        for field in section.key_envs
        if (problem := key_variable_problem(f"providers.{name}.{field}", getattr(section, field)))
    ]
    for problem in problems:
        print(f"ingest: error: {problem}", file=sys.stderr)
    return 2 if problems else 0
