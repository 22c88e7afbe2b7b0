"""Every config key with its default and its one description, as Markdown: docs/config.md.

The text comes from the fields themselves (`field_docs`: each field's `doc(...)`), section by
section; the `algorithm` section lists the options every preset reads, then each preset's
own. docs/config.md is this module's output (a test keeps the two equal):

    python -m mgrpo.config.reference > docs/config.md
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator

from mgrpo.config.recipe import Config
from mgrpo.fields import field_docs
from mgrpo.methods import PRESETS, AlgorithmConfig

__all__ = ["config_keys", "reference_markdown"]

HEADER = """\
# Config keys

Every key a recipe or a `key=value` override can set, with its default and what it means
(meaning, range, paper source). Generated from the fields' own descriptions (`doc(...)` beside
each field in `src/mgrpo/config/sections.py` and `src/mgrpo/methods/`):
`python -m mgrpo.config.reference > docs/config.md`; a test keeps this file equal to it.
"""


def _default(f: dataclasses.Field) -> str:
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return str(value)


def _rows(cls: type, prefix: str, names: set[str] | None = None) -> Iterator[tuple[str, str, str]]:
    """(dotted key, default, description) of the leaf fields of `cls` (nested sections: their
    own tables, left out here)."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if names is not None and f.name not in names:
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            continue
        yield f"{prefix}{f.name}", _default(f), docs[f.name]


def _sections(cls: type = Config, prefix: str = "") -> Iterator[tuple[str, type]]:
    """(dotted prefix, section type) of every section under `cls`, depth first."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint) and hint is not AlgorithmConfig:
            yield f"{prefix}{f.name}", hint
            yield from _sections(hint, f"{prefix}{f.name}.")


def _table(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{key}` | `{default}` | {text.replace('|', chr(92) + '|')} |"
              for key, default, text in rows]
    return "\n".join(lines)


def config_keys() -> set[str]:
    """Every dotted key of the config (the algorithm's of every preset)."""
    keys = {key for key, _, _ in _rows(Config, "")}
    for prefix, section in _sections():
        keys |= {key for key, _, _ in _rows(section, prefix + ".")}
    for name in PRESETS.names():
        keys |= {key for key, _, _ in _rows(PRESETS.get(name).config, "algorithm.")}
    return keys


def reference_markdown() -> str:
    """docs/config.md (module docstring)."""
    parts = [HEADER, "## Top level\n", _table(list(_rows(Config, ""))) + "\n"]
    for prefix, section in _sections():
        summary = " ".join((section.__doc__ or "").split("\n\n")[0].split())
        parts += [f"## `{prefix}`\n", summary + "\n",
                  _table(list(_rows(section, prefix + "."))) + "\n"]
    shared = {f.name for f in dataclasses.fields(AlgorithmConfig)}
    parts += ["## `algorithm`\n",
              "The method's own config type, chosen by `algorithm.preset`. The options every "
              "preset reads:\n",
              _table(list(_rows(AlgorithmConfig, "algorithm.", shared))) + "\n"]
    for name in PRESETS.names():
        entry = PRESETS.get(name)
        own, changed = set(entry.options()), entry.changed_defaults()
        if own or changed:
            parts.append(f"### `algorithm.preset: {name}`\n")
        if own:
            parts += ["Its own options:\n",
                      _table(list(_rows(entry.config, "algorithm.", own))) + "\n"]
        if changed:
            parts += ["Shared options with another default here:\n",
                      "\n".join(["| key | default | source |", "|---|---|---|"]
                                 + [f"| `algorithm.{key}` | `{value}` | {source} |"
                                    for key, (value, source) in changed.items()]) + "\n"]
    plain = [name for name in PRESETS.names()
             if not PRESETS.get(name).options() and not PRESETS.get(name).changed_defaults()]
    parts.append(f"The presets {', '.join(f'`{n}`' for n in plain)} read the shared options "
                 "only. An option another preset declares is dropped at its default and "
                 "refused otherwise, naming the key and the preset.\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(reference_markdown(), end="")
