"""Typed JSON records: dataclasses that read and write one JSON object key for key.

The manifest and the parity rows are files other programs read (CI gates, MLflow, a later forgeml), so
their keys are a contract; code inside forgeml reads them as attributes instead of by string key. A
``Record`` subclass is a dataclass whose field names are its JSON keys; nested records, lists and dicts
of records are rebuilt from the type hints. Reading a file and writing it back gives the same bytes:
the order of the keys read is kept, a key written as ``null`` stays, and keys this version does not
know (a newer forgeml's) are kept in ``extra`` and written back, never dropped.

Writing rules for a record built in code: a field that is ``None`` is left out unless its metadata says
``null=True`` or ``keep_null(name)`` was called (then it is written as ``null``); a field with
``omit_empty=True`` is left out when empty.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

NULL = {"null": True}  # field metadata: write the key as null when the value is None
OMIT_EMPTY = {"omit_empty": True}  # field metadata: leave the key out when the value is empty


@dataclass
class Record:
    """Base of the typed records; ``extra`` holds the keys this version does not know, in file order."""

    extra: dict[str, Any] = field(default_factory=dict, kw_only=True, repr=False, compare=False)
    _keys: ClassVar[tuple[str, ...]] = ()  # per instance once read: the keys the JSON had, in its order
    _nulls: ClassVar[frozenset[str]] = frozenset()  # per instance: fields written as null when None

    def keep_null(self, *names: str):
        """Write these fields as ``null`` when they are None (a key whose presence is the contract)."""
        self._nulls = self._nulls | frozenset(names)
        return self

    @classmethod
    def from_json(cls, data):
        """The record for a JSON object (a record passes through unchanged)."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        hints = _hints(cls)
        known = {f.name for f in dataclasses.fields(cls) if f.name != "extra"}
        kwargs = {k: _decode(hints[k], v) for k, v in data.items() if k in known}
        obj = cls(**kwargs, extra={k: v for k, v in data.items() if k not in known})
        obj._keys = tuple(data)
        return obj

    def to_json(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            if f.name not in self._keys:
                if v is None and not (f.metadata.get("null") or f.name in self._nulls):
                    continue
                if f.metadata.get("omit_empty") and not v:
                    continue
            out[f.name] = _encode(v)
        out.update(self.extra)
        if self._keys:
            rank = {k: i for i, k in enumerate(self._keys)}
            out = dict(sorted(out.items(), key=lambda kv: rank.get(kv[0], len(rank))))
        return out


_HINTS: dict[type, dict] = {}


def _hints(cls) -> dict:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _decode(hint, value):
    """``value`` read as ``hint`` says; a value of another shape (a newer version's) is kept as it is."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return _decode(options[0], value) if len(options) == 1 else value
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_json(value) if isinstance(value, dict) else value
    if origin is list and isinstance(value, list) and args:
        return [_decode(args[0], v) for v in value]
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {k: _decode(args[1], v) for k, v in value.items()}
    return value


def _encode(value):
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value
