"""One small registry class, reused for methods, datasets, models, metrics and attackers."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from benchmark.errors import BenchmarkError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to classes or factory functions.

    Args:
        kind: What the registry holds ("method", "dataset", ...); used in errors.
        base: If given, registered objects must be subclasses of it.
    """

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self.base = base
        self._items: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@METHODS.register()`` or ``@DATASETS.register("cifar10")``."""

        def deco(obj: T) -> T:
            key = name or _default_name(obj)
            if key in self._items:
                raise BenchmarkError(f"duplicate {self.kind} name {key!r}: already registered by {self._items[key]!r}")
            if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
                raise BenchmarkError(f"{self.kind} {key!r} must be a subclass of {self.base.__name__}")
            self._items[key] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        """Looks a name up; an unknown name fails with a did-you-mean line."""
        if name not in self._items:
            close = difflib.get_close_matches(str(name), list(self._items), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ";"
            raise BenchmarkError(f"unknown {self.kind} {name!r}{hint} available: {', '.join(sorted(self._items))}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, Any]]:
        return [(k, self._items[k]) for k in self.names()]


def _default_name(obj: Any) -> str:
    """Registry key from a module name, as ``baselines/grad_ascent.py`` -> ``grad_ascent``."""
    module = getattr(obj, "__module__", "") or ""
    if module.startswith("baselines."):
        return module.rsplit(".", 1)[1]
    name = getattr(obj, "__name__", str(obj))
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
