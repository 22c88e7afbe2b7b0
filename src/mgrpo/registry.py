"""`Registry`: the one name -> entry table behind every swappable variant.

Advantage estimators, loss aggregations and KL estimates (`core`), vote tie rules
(`core.voting`), rollout engines (`rollout`), presets and rewards (`methods`) each keep one
`Registry`. An entry registers where it is defined, with a decorator (verl's
`register_adv_est` pattern), so adding a variant touches the one file that defines it:

    ADVANTAGE_ESTIMATORS = Registry("advantage estimator")

    @ADVANTAGE_ESTIMATORS.register("grpo")
    def group_advantages(rewards, mask): ...

A second entry under a taken name is refused (`DuplicateNameError`), and every lookup of an
unknown name fails with the same message, naming the kind and listing the valid names
(`UnknownNameError`, a ValueError). Standard library only: `core/` imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

__all__ = ["DuplicateNameError", "Registry", "UnknownNameError"]

T = TypeVar("T")


class UnknownNameError(ValueError):
    """A name that no entry of the registry has; the message lists the valid names."""


class DuplicateNameError(ValueError):
    """A second entry under a name that is already registered."""


class Registry(Generic[T]):
    """Names -> entries, filled at the definitions (`register`) and read by name (`get`).

    Iterating gives the names in registration order; `names()` sorted, as error messages
    list them. `kind` names what the entries are, for the messages ("advantage estimator").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name: str, entry: T | None = None) -> T | Callable[[T], T]:
        """Add `entry` under `name`: `register(name, entry)`, or as a decorator
        `@register(name)` over the definition (the definition is returned unchanged).

        Raises DuplicateNameError when `name` is taken, ValueError for an empty name."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def add(item: T) -> T:
            if name in self._entries:
                raise DuplicateNameError(f"{self.kind} {name!r} is already registered "
                                         f"(registered: {', '.join(self.names())})")
            self._entries[name] = item
            return item

        return add if entry is None else add(entry)

    def unregister(self, name: str) -> T:
        """Remove and return the entry of `name` (tests; user entries replaced on purpose)."""
        return self._entries.pop(self._check(name))

    def get(self, name: str) -> T:
        """The entry of `name`; UnknownNameError (a ValueError) lists the valid names."""
        return self._entries[self._check(name)]

    __getitem__ = get

    def _check(self, name: object) -> str:
        if not isinstance(name, str) or name not in self._entries:
            raise UnknownNameError(self.unknown_message(name))
        return name

    def unknown_message(self, name: object) -> str:
        """The one message for a name this registry does not have."""
        return f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}"

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self._entries))

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs in registration order."""
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
