"""Stable tokens of driver values, for cache keys: equal values give equal tokens in any process.

A by-value input is shipped as its cloudpickle bytes, but those bytes are not stable for classes
defined in a notebook: cloudpickle tags each such class with a random id. Here such classes (and
instances of them, and functions that refer to them) are pickled with the class replaced by a token
of its own contents: name, bases and attributes, with methods pickled the same way.
"""

from __future__ import annotations

import io
import sys
from typing import Any

import cloudpickle
import xxhash

_SKIPPED_ATTRS = {"__dict__", "__weakref__", "__module__"}


def _by_value(cls: type) -> bool:
    return cls.__module__ == "__main__" or cls.__module__ not in sys.modules


class _TokenPickler(cloudpickle.Pickler):  # type: ignore[misc]
    def __init__(self, file: io.BytesIO, seen: set[int]) -> None:
        super().__init__(file, protocol=5)
        self.seen = seen

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type) and _by_value(obj):
            return str, (_class_token(obj, self.seen),)
        return super().reducer_override(obj)


class _SortedSet(tuple[Any, ...]):
    """Stands in for a set while tokenizing: its members in a stable order."""


def _canonical(obj: Any, seen: set[int]) -> Any:
    """Sets (whose pickle follows an iteration order that string hashing randomizes per process)
    replaced by their sorted members, inside plain containers."""
    t = type(obj)
    if t in (set, frozenset):
        return _SortedSet(sorted((_canonical(v, seen) for v in obj),
                                 key=lambda v: value_token(v, seen)))
    if t in (list, tuple):
        return t(_canonical(v, seen) for v in obj)
    if t is dict:
        return {_canonical(k, seen): _canonical(v, seen) for k, v in obj.items()}
    return obj


def _class_token(cls: type, seen: set[int]) -> str:
    if id(cls) in seen:  # a class that refers to itself (a method naming its own class)
        return f"class:{cls.__qualname__}"
    seen.add(id(cls))
    parts = [cls.__qualname__]
    parts += [value_token(b, seen) for b in cls.__bases__]
    for name, value in sorted(vars(cls).items()):
        if name not in _SKIPPED_ATTRS:
            parts.append(f"{name}={value_token(value, seen)}")
    return "class:" + xxhash.xxh3_128("\0".join(parts).encode()).hexdigest()


def value_token(obj: Any, seen: set[int] | None = None) -> str:
    """A hex token of ``obj``'s content. Raises what pickling raises for unpicklable values."""
    buf = io.BytesIO()
    seen = set() if seen is None else seen
    _TokenPickler(buf, seen).dump(_canonical(obj, seen))
    return xxhash.xxh3_128(buf.getvalue()).hexdigest()


def value_info(value: Any, limit: int = 200) -> dict[str, str]:
    """A by-value input as lineage and ``nbflow diff`` show it: its type and a short repr (a
    repr that raises, or a huge one, does not stop a run)."""
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else (
        f"{kind.__module__}.{kind.__qualname__}")
    try:
        text = repr(value)
    except Exception as exc:  # a user's __repr__ may raise anything
        text = f"<{name}: repr raised {type(exc).__name__}>"
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return {"type": name, "repr": text}
