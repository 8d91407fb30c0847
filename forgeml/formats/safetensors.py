"""The one safetensors header reader: ``forgeml inspect`` and the GGUF writer's tensor source use it.

A safetensors file is an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
data_offsets relative to the end of the header, plus an optional ``__metadata__``), then the data.
The header is checked against the file size before anything trusts it, so a corrupt or truncated
file fails with one line naming it.
"""

from __future__ import annotations

import json

from forgeml.formats import jsontext
import math
import struct
from dataclasses import dataclass
from pathlib import Path


from forgeml.errors import InputError, require_file

ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
              "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "U16": 2, "U32": 4, "U64": 8, "C64": 8}
MAX_HEADER = 100 << 20  # a larger header is not a checkpoint but garbage (or an attack on memory)


@dataclass(frozen=True)
class TensorEntry:
    file: Path
    dtype: str  # safetensors dtype name
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    nbytes: int


@dataclass(frozen=True)
class Header:
    path: Path
    size: int  # bytes of the whole file
    tensors: dict[str, TensorEntry]  # in the header's order
    metadata: dict[str, str]


def read_header(path: Path) -> Header:
    """Parse and check a safetensors header; ``InputError`` naming the file when it is not a sound one.

    Checked: the header length fits the file, the JSON is an object of entries at most a few levels
    deep enough for json, each dtype is known, each byte range matches its shape and lies in the file, and no two
    ranges overlap (a reader would otherwise see one tensor's bytes as another's)."""
    path = require_file(path, empty_ok=True)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise InputError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, MAX_HEADER):
                raise InputError(f"{path}: not a safetensors file (header length {n} does not fit the "
                                 f"{size}-byte file)")
            raw = f.read(n)
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror})") from e
    try:
        header = jsontext.loads(raw)
    except (RecursionError, jsontext.TooDeep):
        raise InputError(f"{path}: corrupt safetensors header (JSON nested too deeply to be a header)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: corrupt safetensors header (not JSON: {str(e)[:200]})") from e
    if not isinstance(header, dict):
        raise InputError(f"{path}: corrupt safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise InputError(f"{path}: corrupt safetensors header (`__metadata__` is not a JSON object)")
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        try:
            dtype, shape, (start, end) = info["dtype"], tuple(_dim(d) for d in info["shape"]), info["data_offsets"]
            start, end = _dim(start), _dim(end)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{path}: corrupt safetensors entry for {name!r}") from e
        if dtype not in ITEM_BYTES:
            raise InputError(f"{path}: tensor {name!r} has unknown dtype {str(dtype)[:40]!r} "
                             f"(safetensors dtypes: {', '.join(ITEM_BYTES)})")
        count = math.prod(shape)
        if end - start != count * ITEM_BYTES[dtype]:
            raise InputError(f"{path}: corrupt safetensors entry for {name!r} (byte range does not match its shape)")
        if base + end > size or end < start:
            raise InputError(f"{path}: tensor {name!r} points past the end of the file (truncated download?)")
        tensors[name] = TensorEntry(path, dtype, shape, base + start, end - start)
    spans = sorted((t.start, t.start + t.nbytes, name) for name, t in tensors.items() if t.nbytes)
    for (s0, e0, a), (s1, _, b) in zip(spans, spans[1:]):
        if s1 < e0:
            raise InputError(f"{path}: tensors {a!r} and {b!r} overlap (bytes {s1}..{e0} belong to both); "
                             "a corrupt or hostile safetensors file")
    return Header(path, size, tensors, metadata)


def _dim(v) -> int:
    """A shape entry or offset: a non-negative JSON integer (not a bool, float or string)."""
    if type(v) is not int or v < 0:
        raise ValueError(f"not a non-negative integer: {v!r}")
    return v

