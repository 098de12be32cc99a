"""One strict ``to_dict`` / ``from_dict`` for every frozen record dataclass of edgeformer.

Records are written as JSON (manifests, latency tables, reports) and read back on edge devices, so
this module is the bottom layer: standard library and :mod:`edgeformer.errors` only, no torch, no numpy.
Reading is driven by the field type hints and is strict: an unknown key, a missing required field or a
value of the wrong type raises :class:`~edgeformer.errors.ConfigError` naming the file, the path and the
fix, instead of a record that fails three steps later. Supported hints: ``str``, ``int`` (not ``bool``),
``float`` (``int`` accepted), ``bool``, ``None``, unions, ``Literal[...]``, ``tuple[T, ...]``,
``tuple[A, B]``, ``dict[str, T]``, ``Any`` (passed through), ``enum.Enum`` (by value), ``pathlib.Path``
and nested dataclasses.

Field options:
    * ``field(metadata=SKIP)`` (``{"record": "skip"}``): in memory only (raw timing samples, handles);
      never written, an unknown key when read, so it needs a default.
    * ``field(init=False)``: derived in ``__post_init__``; neither written nor read.

Derived values: a record may name properties in a ``DERIVED`` class attribute (``("stable",)``); they are
written for readers of the JSON and ignored when read back, since the fields recompute them.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import os
import types
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError, did_you_mean

__all__ = ["SKIP", "Record", "from_dict", "to_dict"]

SKIP = types.MappingProxyType({"record": "skip"})  # field(metadata=SKIP): in memory only, never in JSON
_T = TypeVar("_T")
_R = TypeVar("_R", bound="Record")
_MISMATCH = object()


@functools.cache  # the latency tables build thousands of records; dataclasses.fields is not free
def _written(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.init and f.metadata.get("record") != "skip")


@functools.cache  # get_type_hints evaluates every annotation string; once per class is enough
def _schema(cls: type) -> dict[str, tuple[Any, bool]]:
    """Map each written field to (type hint, required)."""
    hints, written = get_type_hints(cls), _written(cls)
    no_default = dataclasses.MISSING
    return {
        f.name: (hints[f.name], f.default is no_default and f.default_factory is no_default)
        for f in dataclasses.fields(cls)
        if f.name in written
    }


def to_dict(obj: Any) -> dict[str, Any]:
    """Return a dataclass instance as a JSON-ready dict.

    Tuples become lists, nested dataclasses dicts, enums their value, paths ``str``; ``Any`` fields are
    converted the same way. Skip and ``init=False`` fields are left out.

    Raises:
        TypeError: a value JSON cannot hold (a numpy scalar, a set, an object).
    """
    d = {name: _dump(getattr(obj, name)) for name in _written(type(obj))}
    for name in getattr(type(obj), "DERIVED", ()):  # computed properties, written for readers of the JSON
        d[name] = _dump(getattr(obj, name))
    return d


def _dump(v: Any) -> Any:
    if isinstance(v, enum.Enum):  # before str/int: str- and int-mixin enums are instances of those too
        return _dump(v.value)
    if v is None or isinstance(v, (str, int, float)):
        return v
    if isinstance(v, PurePath):
        return str(v)
    if isinstance(v, (tuple, list)):
        return [_dump(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _dump(x) for k, x in v.items()}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return to_dict(v)
    if type(v).__module__ == "numpy" and hasattr(v, "item"):  # numpy scalars in free-form fields; no numpy import
        return _dump(v.item())
    # failing here names the type; json.dumps would fail later, far from the record that holds it
    raise TypeError(f"cannot write a {type(v).__name__} to JSON: {v!r:.60}")


def from_dict(cls: type[_T], d: Any, where: str | None = None) -> _T:
    """Build the dataclass ``cls`` from ``d``, checking every key and value against the type hints.

    Args:
        cls: a dataclass (a :class:`Record` or not) whose module may use ``from __future__ import annotations``.
        d: the parsed JSON object.
        where: what ``d`` was read from (``"artifact.json"``); starts every error message.

    Raises:
        ConfigError: unknown key, missing required key, or a value of the wrong type, with its path
            (``artifact.json: Manifest.inputs[0].shape[1]: expected int | str, got float (1.5)``).
    """
    return _load(cls, d, f"{where}: {cls.__name__}" if where else cls.__name__)


def _load_record(cls: type[_T], d: Any, loc: str) -> _T:
    if not isinstance(d, Mapping):
        raise ConfigError(f"{loc}: expected a {cls.__name__} object, got {_got(d)}")
    schema = _schema(cls)
    derived = getattr(cls, "DERIVED", ())
    d = {k: v for k, v in d.items() if k not in derived}  # recomputed from the fields, never trusted from a file
    unknown = [k for k in d if k not in schema]
    if unknown:
        s = "s" if len(unknown) > 1 else ""
        hint = did_you_mean(str(unknown[0]), schema) if len(unknown) == 1 else ""
        known = ", ".join(schema) or "(none)"
        raise ConfigError(f"{loc}: unknown key{s} {', '.join(map(repr, unknown))}; known: {known}{hint}")
    missing = [k for k, (_, required) in schema.items() if required and k not in d]
    if missing:
        s = "s" if len(missing) > 1 else ""
        raise ConfigError(f"{loc}: missing required key{s} {', '.join(map(repr, missing))}")
    return cls(**{k: _load(schema[k][0], v, f"{loc}.{k}") for k, v in d.items()})


def _load(tp: Any, v: Any, loc: str) -> Any:
    out = _convert(tp, v, loc)
    if out is _MISMATCH:
        raise ConfigError(f"{loc}: expected {_name(tp)}, got {_got(v)}")
    return out


def _convert(tp: Any, v: Any, loc: str) -> Any:
    """Return ``v`` as ``tp``, or ``_MISMATCH`` so the caller names the whole hint (``Path | None``, not ``Path``)."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return v
    if tp is None or tp is type(None):
        if v is None:
            return None
    elif origin is Union or origin is types.UnionType:
        if v is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None: an error deep inside X keeps its precise path
            return _convert(options[0], v, loc)
        for a in options:  # first match wins, so list int before float in int | float
            try:
                out = _convert(a, v, loc)
            except ConfigError:
                continue
            if out is not _MISMATCH:
                return out
    elif origin is Literal:
        # type check too: True == 1 and 1 == 1.0 would otherwise pass Literal[1] / Literal[1.0]
        if any(v == a and type(v) is type(a) for a in args):
            return v
    elif origin is tuple or tp is tuple:
        if isinstance(v, (list, tuple)):
            if not args or (len(args) == 2 and args[1] is Ellipsis):
                return tuple(_load(args[0] if args else Any, x, f"{loc}[{i}]") for i, x in enumerate(v))
            if len(v) != len(args):
                raise ConfigError(f"{loc}: expected {_name(tp)} ({len(args)} items), got {len(v)} items")
            return tuple(_load(a, x, f"{loc}[{i}]") for i, (a, x) in enumerate(zip(args, v, strict=True)))
    elif origin is dict or tp is dict:
        if isinstance(v, Mapping):
            key_tp, val_tp = args or (Any, Any)
            return {_load(key_tp, k, f"{loc} key"): _load(val_tp, x, f"{loc}[{k!r}]") for k, x in v.items()}
    elif origin is not None:
        raise TypeError(f"{loc}: records do not support the annotation {tp!r}")
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(v, tp):
            return v
        try:
            return tp(v)
        except ValueError:
            pass
    elif dataclasses.is_dataclass(tp):
        return v if isinstance(v, tp) else _load_record(tp, v, loc)
    elif tp is bool or tp is str:
        if isinstance(v, tp):
            return v
    elif tp is int:
        if isinstance(v, int) and not isinstance(v, bool):  # bool subclasses int; true for an int field is a typo
            return v
    elif tp is float:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)  # JSON writes 2.0 as 2; the record still holds a float
    elif isinstance(tp, type) and issubclass(tp, PurePath):
        if isinstance(v, (str, os.PathLike)):
            return tp(v)
    else:
        raise TypeError(f"{loc}: records do not support the annotation {tp!r}")
    return _MISMATCH


def _name(tp: Any) -> str:
    """Spell a hint the way a JSON author needs it: enums and literals as their allowed values."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is None or tp is type(None):
        return "None"
    if origin is Literal:
        return " | ".join(map(repr, args))
    if origin is Union or origin is types.UnionType:
        return " | ".join(map(_name, args))
    if origin is not None:
        return f"{origin.__name__}[{', '.join('...' if a is Ellipsis else _name(a) for a in args)}]"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " | ".join(repr(m.value) for m in tp)
    return getattr(tp, "__name__", repr(tp))


def _got(v: Any) -> str:
    return f"{type(v).__name__} ({v!r:.60})"


class Record:
    """Mixin giving a frozen dataclass strict ``to_dict`` / ``from_dict`` and JSON helpers.

    Example::

        @dataclass(frozen=True, kw_only=True)
        class TensorSpec(Record):
            name: str
            shape: tuple[int | str, ...]

        TensorSpec.from_dict({"name": "x", "shape": ["batch", 3]})  # shape == ("batch", 3)
    """

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the record as a JSON-ready dict; see :func:`to_dict`."""
        return to_dict(self)

    @classmethod
    def from_dict(cls: type[_R], d: Any, *, where: str | None = None) -> _R:
        """Build the record from a parsed JSON object, strictly; see :func:`from_dict`."""
        return from_dict(cls, d, where)

    def to_json(self) -> str:
        """Return the record as JSON with sorted keys and an indent of 2, so diffs stay small."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_json(cls: type[_R], text: str, *, where: str | None = None) -> _R:
        """Parse ``text`` and build the record; bad JSON is a :class:`ConfigError` too."""
        try:
            d = json.loads(text)
        # ValueError: also an int past Python's 4300 digits; RecursionError: arrays nested thousands deep
        except (ValueError, RecursionError) as e:
            raise ConfigError(f"{where or cls.__name__}: not valid JSON ({e}); fix or regenerate the file") from e
        return from_dict(cls, d, where)
