"""An .onnx file as the source: the reference is onnxruntime on the file as given."""

from __future__ import annotations

import pytest

import forgeml
from forgeml.errors import InputError


def test_onnx_file_round_trip(zoo_runs, tmp_path):
    src = zoo_runs("cnn").artifacts["onnx"].path
    r = forgeml.convert(str(src), targets=["onnx", "safetensors"], out_dir=tmp_path / "o")
    assert r.ok, r.parity.table()
    assert r.manifest["source"]["kind"] == "onnx"
    assert r.manifest["stages"][0]["parity"]["reference"].startswith("onnxruntime")
    # safetensors from an ONNX source: the initializers, loaded back into the ONNX model.
    assert r.manifest["stages"][-1]["parity"]["rows"][0]["max_abs"] == 0


@pytest.mark.parametrize("content", [b"", b"not a model at all", None])
def test_corrupt_or_truncated_onnx(tmp_path, zoo_runs, content):
    path = tmp_path / "bad.onnx"
    if content is None:  # truncated
        data = zoo_runs("mlp").artifacts["onnx"].path.read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(InputError, match="bad.onnx"):
        forgeml.convert(str(path), out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()
