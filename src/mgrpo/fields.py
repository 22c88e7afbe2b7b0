"""How a config type is written: documented fields, `ConfigError`, and the checks that raise it.

Every config type (the recipe sections in `mgrpo.config`, the algorithm configs in
`mgrpo.methods`) is a frozen dataclass whose fields are declared once, each with its
description (`doc`: meaning, range, paper source), and whose `__post_init__` checks its
values with `check` / `one_of`, raising `ConfigError` with the dotted key. Names chosen from
a fixed set are `Literal` types (`literal_names` reads them back). Standard library only: the
config types load without torch, so a config error costs no heavy import.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable
from dataclasses import field, fields
from typing import Any

from mgrpo.checks import require, require_one_of

__all__ = ["DOC", "ConfigError", "check", "doc", "field_docs", "literal_names", "one_of"]

DOC = "doc"  # the metadata key of a field's documentation


class ConfigError(ValueError):
    """A recipe or override is invalid; the message names the dotted key."""


# `check(ok, key, message)` / `one_of(value, key, allowed)`: a ConfigError "key: message"
check = functools.partial(require, error=ConfigError)
one_of = functools.partial(require_one_of, error=ConfigError)


def doc(default: Any, text: str, *, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with its one description: what it is, its range, its source."""
    if factory is not None:
        return field(default_factory=factory, metadata={DOC: text})
    return field(default=default, metadata={DOC: text})


def field_docs(section: type) -> dict[str, str]:
    """Field name -> its description, for a config type (every field has one; a test
    checks it). The one place the README's key table and the docs take a key's meaning from."""
    return {f.name: f.metadata.get(DOC, "") for f in fields(section)}


def literal_names(alias: Any) -> tuple[str, ...]:
    """The values of a `Literal[...]` type, in order (e.g. the valid names of a key)."""
    if typing.get_origin(alias) is not typing.Literal:
        raise TypeError(f"{alias!r} is not a Literal type")
    return tuple(typing.get_args(alias))
