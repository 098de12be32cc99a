"""A small generic registry: explicit names, duplicates are errors, entries may be lazy.

Example::

    backends: Registry[type] = Registry("backend")
    backends.add_lazy("ort", "edgeformer.runtimes.ort:OrtBackend")  # imported on first get()
    backends.get("ort")
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import ConfigError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, on_unknown: Callable[[str, list[str]], Exception] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        self._on_unknown = on_unknown

    def _claim(self, name: str) -> None:
        if name in self:
            raise ConfigError(f"{self.kind} {name!r} is registered twice; names must be unique.")

    def add(self, name: str, item: T) -> T:
        self._claim(name)
        self._items[name] = item
        return item

    def add_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:attr"``, imported on first :meth:`get`."""
        self._claim(name)
        self._lazy[name] = target

    def get(self, name: str) -> T:
        if name in self._lazy:
            module, _, attr = self._lazy[name].partition(":")
            # a failed import leaves the entry lazy, so the next lookup fails the same way, not as "unknown"
            self._items[name] = getattr(importlib.import_module(module), attr)
            del self._lazy[name]
        if name not in self._items:
            if self._on_unknown is not None:
                raise self._on_unknown(name, self.names())
            raise ConfigError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}; known: {', '.join(self.names())}."
            )
        return self._items[name]

    def names(self) -> list[str]:
        return [*self._items, *self._lazy]

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items) + len(self._lazy)
