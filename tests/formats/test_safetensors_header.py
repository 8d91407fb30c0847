"""The safetensors header checks that fuzzing and users found missing: each is one InputError line."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from forgeml.cli.app import main
from forgeml.errors import InputError
from forgeml.formats.safetensors import read_header


def _file(path, header, data=b"\0" * 64):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)
    return path


F4 = {"dtype": "F32", "shape": [4]}
CASES = {
    "overlap": ({"a": {**F4, "data_offsets": [0, 16]}, "b": {**F4, "data_offsets": [8, 24]}}, "overlap"),
    "same-range": ({"a": {**F4, "data_offsets": [0, 16]}, "b": {**F4, "data_offsets": [0, 16]}}, "overlap"),
    "unknown-dtype": ({"a": {"dtype": "Q9", "shape": [4], "data_offsets": [0, 16]}}, "unknown dtype 'Q9'"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "float-shape": ({"a": {"dtype": "F32", "shape": [4.0], "data_offsets": [0, 16]}}, "corrupt safetensors entry"),
    "negative-offset": ({"a": {**F4, "data_offsets": [-16, 0]}}, "corrupt safetensors entry"),
    "huge-shape": ({"a": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 16]}}, "does not match"),
    "metadata-list": ({"__metadata__": [1], "a": {**F4, "data_offsets": [0, 16]}}, "`__metadata__`"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_headers_are_one_input_error(tmp_path, capsys, case):
    header, needle = CASES[case]
    path = _file(tmp_path / "m.safetensors", header)
    with pytest.raises(InputError, match=None) as e:
        read_header(path)
    assert needle in str(e.value) and str(path) in str(e.value)
    assert main(["inspect", str(path)]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(err) == 1 and needle in err[0], err


def test_adjacent_and_empty_tensors_are_fine(tmp_path):
    from safetensors.numpy import save_file

    save_file({"a": np.ones(4, np.float32), "b": np.zeros(0, np.float32), "c": np.ones((2, 2), np.float16)},
              str(tmp_path / "ok.safetensors"))
    h = read_header(tmp_path / "ok.safetensors")
    assert set(h.tensors) == {"a", "b", "c"} and h.tensors["a"].nbytes == 16


def test_deep_json_is_refused_even_with_a_raised_recursion_limit(tmp_path):
    """json's C decoder recurses per level: with the limit raised (torch raises it) a deep file used to
    overflow the C stack and kill the process. The depth is now measured before parsing."""
    import sys

    path = _file(tmp_path / "deep.safetensors", b"[" * 200_000 + b"]" * 200_000)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000_000)
    try:
        with pytest.raises(InputError, match="nested too deeply"):
            read_header(path)
    finally:
        sys.setrecursionlimit(old)
