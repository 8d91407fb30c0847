"""``forgeml inspect model.gguf``: metadata, tensor table and tokenizer summary, read without loading weights.

The header is parsed with gguf-py's reader (memory-mapped, tensor data untouched) and every tensor's
byte range is checked against the file size, so a truncated download is reported as such.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from forgeml.errors import InputError, require

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

    size = path.stat().st_size
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise InputError(f"{path}: not a GGUF file (magic {magic!r}, expected b'GGUF')")
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, IndexError, KeyError, OverflowError, struct_error()) as e:
        raise InputError(f"{path}: corrupt or truncated GGUF file ({type(e).__name__}: {e})") from e
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
