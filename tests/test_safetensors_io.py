"""forgeml.formats.safetensors: the one header reader behind `forgeml inspect` and the GGUF writer."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from forgeml.errors import InputError
from forgeml.targets.safetensors.target import inspect_safetensors
from forgeml.formats.safetensors import read_header
from forgeml.targets.gguf.tensors import SafetensorsSource


def _write(path, tensors: dict[str, np.ndarray], metadata=None) -> bytes:
    header, blobs, at = {}, [], 0
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": {"float32": "F32", "float16": "F16"}[a.dtype.name], "shape": list(a.shape),
                        "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    data = struct.pack("<Q", len(h)) + h + b"".join(blobs)
    path.write_bytes(data)
    return data


def test_both_readers_see_the_same_tensors(tmp_path):
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.ones(4, dtype=np.float16)
    p = tmp_path / "m.safetensors"
    _write(p, {"w": w, "b": b}, {"format": "pt"})
    h = read_header(p)
    assert {k: (e.dtype, e.shape, e.nbytes) for k, e in h.tensors.items()} == {"w": ("F32", (3, 4), 48),
                                                                                  "b": ("F16", (4,), 8)}
    assert h.metadata == {"format": "pt"}
    info = inspect_safetensors(p)
    assert info["parameters"] == 16 and info["metadata"] == {"format": "pt"} and info["dtypes"] == {"F32": 1, "F16": 1}
    np.testing.assert_array_equal(SafetensorsSource([p]).get("w"), w)


@pytest.mark.parametrize("cut, message", [(4, "shorter than its 8-byte"), (30, "does not fit"),
                                          (-8, "points past the end")])
def test_damaged_files_fail_in_one_line_naming_the_file(tmp_path, cut, message):
    p = tmp_path / "bad.safetensors"
    data = _write(p, {"w": np.zeros((2, 2), np.float32)})
    p.write_bytes(data[:cut])
    for read in (read_header, inspect_safetensors):
        with pytest.raises(InputError, match=message) as e:
            read(p)
        assert str(p) in str(e.value) and "\n" not in str(e.value)
