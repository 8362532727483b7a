"""How a settings section is declared and read back: one field, its default and its help.

Owns `setting` (a dataclass field whose help text sits beside it, in the
field's metadata), `Key` (one field read back: name, type, choices, help) and
`keys` (a settings class's keys, in declaration order). `[run]` (in
`ingest.config`) and every `[providers.NAME]` section (in
`ingest.providers.settings`) are declared this way, and everything that
describes them is generated from `keys`: the CLI flags and their help
(`ingest.cli.options`), `ingest config show` and `ingest config example`
(`ingest.cli.config`), which is what `config.example.toml` must equal.

Invariants: every field of a settings class is declared with `setting` (or
`inherit`), so none lacks help; a settings value is a bool, int, float, str
or a `Literal` of strs, the types a TOML file and a flag can both carry.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Literal, TypeVar, get_args, get_origin

T = TypeVar("T")

Kind = Literal["bool", "int", "float", "str"]
_KINDS: dict[object, Kind] = {bool: "bool", int: "int", float: "float", str: "str"}


def setting(default: T, help: str) -> T:
    """A settings field: its default and the one line of help that documents it."""
    return dataclasses.field(default=default, metadata={"help": help})


def inherit(base: type, name: str, default: T) -> T:
    """A field of `base` declared again with another default; its help stays `base`'s."""
    for original in dataclasses.fields(base):
        if original.name == name:
            return dataclasses.field(default=default, metadata=original.metadata)
    raise TypeError(f"{base.__name__} has no field {name!r} to inherit")


@dataclass(frozen=True, slots=True)
class Key:
    """One settings key as the flags, the config file and `ingest config` show it."""

    name: str
    kind: Kind
    choices: tuple[str, ...]  # a Literal's values; empty for a free value
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


_KEYS: dict[type, tuple[Key, ...]] = {}


def keys(cls: type) -> tuple[Key, ...]:
    """The keys of settings dataclass `cls`, in declaration order (inherited first).

    Cached per class: every flag asks which providers own it, and resolving the
    type hints for each ask was ~15-20 ms of every `ingest run`'s start-up.
    """
    known = _KEYS.get(cls)
    if known is None:
        known = _KEYS[cls] = _keys(cls)
    return known


def _keys(cls: type) -> tuple[Key, ...]:
    hints = typing.get_type_hints(cls)
    result = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        choices: tuple[str, ...] = ()
        if get_origin(hint) is Literal:
            choices = tuple(str(v) for v in get_args(hint))
            hint = str
        kind = _KINDS.get(hint)
        if kind is None:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported settings type {hint!r}")
        help_text = f.metadata.get("help")
        if not help_text:
            raise TypeError(f"{cls.__name__}.{f.name}: declare it with setting(default, help)")
        result.append(Key(f.name, kind, choices, str(help_text)))
    return tuple(result)
