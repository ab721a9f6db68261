"""One name -> entry mapping per pluggable concept (targets, noise, preprocess, models, losses, ...).

Each concept's module registers its entries next to their code; config validation and the CLIs read
the allowed names from the registry, so adding an option is one decorated function, never an edit
to an if-chain or a second list of names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from ganlab.errors import not_allowed

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name, in registration order. ``key`` is the config key users set (e.g. ``noise.name``),
    so an unknown name is reported as that key's bad value with the allowed names."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.key}: '{name}' is registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda entry: self.add(name, entry)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def allowed(self) -> str:
        return "allowed: " + ", ".join(self._entries)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise not_allowed(self.key, name, self.allowed()) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def items(self):
        return self._entries.items()
