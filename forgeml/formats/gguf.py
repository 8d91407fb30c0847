"""``forgeml inspect model.gguf``: metadata, tensor table and tokenizer summary, read without loading weights.

The header is parsed with gguf-py's reader (memory-mapped, tensor data untouched) and every tensor's
byte range is checked against the file size, so a truncated download is reported as such.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from forgeml.errors import InputError, require, require_file

_ARRAYS_SHOWN = 8


def _value(field):
    """A metadata field as a Python value (strings decoded, long arrays summarized)."""
    from gguf import GGUFValueType

    if not field.types:
        return None
    if field.types[0] == GGUFValueType.ARRAY:
        n = len(field.data)
        sub = field.types[-1]
        if sub == GGUFValueType.STRING:
            items = [bytes(field.parts[i]).decode("utf-8", "replace") for i in field.data[:_ARRAYS_SHOWN]]
        else:
            items = [field.parts[i].tolist()[0] for i in field.data[:_ARRAYS_SHOWN]]
        return {"array": sub.name.lower(), "length": n, "first": items}
    part = field.parts[field.data[0]]
    if field.types[0] == GGUFValueType.STRING:
        return bytes(part).decode("utf-8", "replace")
    v = part.tolist()[0]
    return bool(v) if field.types[0] == GGUFValueType.BOOL else v


def inspect_gguf(path: Path) -> dict:
    require("gguf", "gguf")
    import gguf

    path = require_file(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise InputError(f"{path}: not a GGUF file (magic {magic!r}, expected b'GGUF')")
    check_layout(path)
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, IndexError, KeyError, OverflowError, TypeError, UnicodeDecodeError, struct_error()) as e:
        raise InputError(f"{path}: corrupt or truncated GGUF file ({type(e).__name__}: {str(e)[:200]})") from e
    meta = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        try:
            meta[name] = _value(field)
        except (IndexError, ValueError) as e:
            raise InputError(f"{path}: corrupt GGUF metadata field {name!r} ({e})") from e
    table, types, params = [], Counter(), 0
    for t in reader.tensors:
        end = int(t.data_offset) + int(t.n_bytes)
        if end > size:
            raise InputError(f"{path}: tensor {t.name!r} ends at byte {end} but the file has {size} bytes "
                             "(truncated GGUF file)")
        shape = [int(d) for d in reversed(t.shape.tolist())]  # numpy order: rows first
        params += int(np.prod(shape)) if shape else 1
        types[t.tensor_type.name] += 1
        table.append({"name": t.name, "dtype": t.tensor_type.name, "shape": shape, "bytes": int(t.n_bytes)})
    arch = meta.get("general.architecture")
    tok = {k.removeprefix("tokenizer.ggml."): v for k, v in meta.items()
           if k.startswith("tokenizer.ggml.") and k not in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges",
                                                            "tokenizer.ggml.scores", "tokenizer.ggml.token_type")}
    tokens = meta.get("tokenizer.ggml.tokens")
    merges = meta.get("tokenizer.ggml.merges")
    tok["tokens"] = tokens["length"] if isinstance(tokens, dict) else 0
    tok["merges"] = merges["length"] if isinstance(merges, dict) else 0
    tok["chat_template"] = "tokenizer.chat_template" in meta
    shown = {k: v for k, v in meta.items() if not k.startswith("tokenizer.")}
    version = reader.fields.get("GGUF.version")
    return {"format": "gguf", "path": str(path), "bytes": size,
            "version": _value(version) if version is not None else None,
            "architecture": arch, "name": meta.get("general.name"),
            "file_type": _file_type_name(meta.get("general.file_type")), "tensors": len(table),
            "parameters": params, "tensor_types": dict(types), "tokenizer": tok, "metadata": shown,
            "tensor_table": table}


_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value type -> bytes
_STRING, _ARRAY = 8, 9
MAX_DIMS = 8
MAX_NESTING = 4


def check_layout(path: Path) -> None:
    """Walk the GGUF header (key/value pairs, tensor infos) checking every count and length read
    from it against the bytes that remain, before gguf-py, which trusts them, loops or slices by them.
    A corrupt count would otherwise loop billions of times over a few bytes."""
    _walk(path)


def tensor_table(path: Path) -> tuple[int, dict[str, tuple[int, tuple[int, ...], int]]]:
    """(data section's start, {name: (GGML type id, shape in numpy order, absolute data offset)}) straight
    from the header, in milliseconds: gguf-py's reader spends seconds building an array per token string
    of a 32000-token vocabulary, which a check of the tensor table does not need."""
    return _walk(path, tensors=True)


def _walk(path: Path, tensors: bool = False):
    import mmap
    import struct

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        size = len(m)
        (version,) = struct.unpack_from("<I", m, 4) if size >= 8 else (0,)
        e = ">" if version & 0xFFFF == 0 and version else "<"  # gguf-py reads byte-swapped files too
        pos = 8

        def take(n: int, what: str) -> int:
            nonlocal pos
            if n < 0 or pos + n > size:
                raise InputError(f"{path}: corrupt or truncated GGUF file ({what} at byte {pos} needs {n} bytes, "
                                 f"{max(size - pos, 0)} remain)")
            start, pos = pos, pos + n
            return start

        def u(fmt: str, what: str) -> int:
            return struct.unpack_from(e + fmt, m, take(struct.calcsize(fmt), what))[0]

        def string(what: str) -> None:
            take(u("Q", f"{what} length"), what)

        def value(kind: int, what: str, depth: int = 0) -> None:
            if kind in _SCALAR:
                take(_SCALAR[kind], what)
            elif kind == _STRING:
                string(what)
            elif kind == _ARRAY and depth < MAX_NESTING:
                item, count = u("I", f"{what} item type"), u("Q", f"{what} length")
                if item in _SCALAR:
                    take(count * _SCALAR[item], f"{what} ({count} items)")
                else:
                    take(count * 8, f"{what} ({count} items)")  # each string or array needs >= 8 bytes
                    pos_ = pos - count * 8
                    _rewind(pos_)
                    for _ in range(count):
                        value(item, what, depth + 1)
            else:
                raise InputError(f"{path}: corrupt GGUF file ({what} has unknown value type {kind})")

        def _rewind(to: int) -> None:
            nonlocal pos
            pos = to

        n_tensors, n_kv = u("Q", "tensor count"), u("Q", "key/value count")
        take(n_kv * 12, f"{n_kv} key/value pairs")  # a key length and a type, at least
        _rewind(pos - n_kv * 12)
        align = 32  # GGUF's default; general.alignment overrides it
        for i in range(n_kv):
            k0 = pos + 8
            string(f"key {i}")
            key = bytes(m[k0:pos])
            kind = u("I", f"type of key {i}")
            v0 = pos
            value(kind, f"key {i}")
            if key == b"general.alignment" and kind == 4:
                align = struct.unpack_from(e + "I", m, v0)[0] or 32
        take(n_tensors * 24, f"{n_tensors} tensor infos")  # name length, dims, type, offset: at least
        _rewind(pos - n_tensors * 24)
        table = {}
        for i in range(n_tensors):
            n0 = pos + 8
            string(f"tensor {i} name")
            name = bytes(m[n0:pos]).decode("utf-8", "replace")
            dims = u("I", f"tensor {i} dimension count")
            if dims > MAX_DIMS:
                raise InputError(f"{path}: corrupt GGUF file (tensor {i} has {dims} dimensions)")
            at = take(dims * 8 + 12, f"tensor {i} shape, type and offset")
            if tensors:
                shape = struct.unpack_from(f"{e}{dims}Q", m, at)
                kind, offset = struct.unpack_from(e + "IQ", m, at + dims * 8)
                table[name] = (kind, tuple(reversed(shape)), offset)
        if tensors:
            start = pos + (-pos % align)
            return start, {n: (k, shape, start + off) for n, (k, shape, off) in table.items()}


def struct_error():
    import struct

    return struct.error


def _file_type_name(value) -> str | None:
    if value is None:
        return None
    from gguf import LlamaFileType

    try:
        return LlamaFileType(int(value)).name
    except ValueError:
        return str(value)
