"""`ingest config show`: the effective settings, as TOML, with secrets masked."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from ingest.cli.options import add_settings_flags, settings_from_args


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


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def mask(value: str) -> str:
    """A secret shown as set or not, never its value."""
    return f"set ({len(value)} characters)" if value else "NOT SET"


def run(args: argparse.Namespace) -> int:
    import sys

    from ingest.config import HELP
    from ingest.errors import ConfigError

    try:
        settings = settings_from_args(args, args.provider)
    except ConfigError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2
    lines = ["[run]"]
    for f in dataclasses.fields(settings.run):
        lines.append(f"{f.name} = {_toml(getattr(settings.run, f.name))}  # {HELP.get(f.name, '')}")
    names = [args.provider] if args.provider else sorted(settings.providers)
    for name in names:
        section = settings.providers[name]
        lines.append(f"\n[providers.{name}]")
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            line = f"{f.name} = {_toml(value)}"
            if f.name.endswith("_env") and value:
                line += f"  # ${value}: {mask(os.environ.get(value, ''))}"
            lines.append(line)
    print("\n".join(lines))
    return 0
