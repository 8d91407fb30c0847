"""Files are recognised by their content, not their name: models shipped in packages use ``.jit``,
``.bin`` or no suffix at all."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import forgeml
from forgeml.errors import InputError
from forgeml.pipeline.sources import resolve, sniff


def test_torchscript_named_jit_converts_with_parity(tmp_path):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh()).eval()
    path = tmp_path / "vad.jit"
    torch.jit.save(torch.jit.script(net), str(path))
    assert sniff(path) == "torch" and resolve(path).converter.name == "torch"
    r = forgeml.convert(path, (torch.randn(2, 4),), targets=["onnx"], passes=[], out_dir=tmp_path / "o")
    assert r.ok, r.parity.table()


def test_onnx_under_odd_names_is_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    for name in ("model.bin", "model", "detector.ort.weights"):
        path = tmp_path / name
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        assert sniff(path) == "onnx", name
    r = forgeml.convert(tmp_path / "model.bin", targets=["onnx"], passes=[], out_dir=tmp_path / "o")
    assert r.ok, r.parity.table()


def test_torch_zip_checkpoint_hdf5_and_pickle_by_content(tmp_path):
    torch = pytest.importorskip("torch")
    ckpt = tmp_path / "weights.ckpt"
    torch.save({"w": torch.zeros(2)}, str(ckpt))
    assert sniff(ckpt) == "torch"
    h5 = tmp_path / "model.weights"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    assert sniff(h5) == "tensorflow"
    pk = tmp_path / "model.dat"
    pk.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    assert sniff(pk) == "sklearn"
    # A legacy (non-zip) torch.save file is a pickle too; under a torch suffix torch's loader takes it.
    legacy = tmp_path / "old.pt"
    legacy.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    assert resolve(legacy).converter.name == "torch"


def test_pickle_under_odd_name_is_scanned_not_loaded(tmp_path):
    pytest.importorskip("sklearn")
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x80\x04cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(InputError) as e:
        forgeml.convert(path, targets=["onnx"], out_dir=tmp_path / "o")
    assert "os" in str(e.value) and "\n" not in str(e.value)


def test_skops_under_odd_name(tmp_path):
    sio = pytest.importorskip("skops.io")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    path = tmp_path / "classifier.model"
    sio.dump(LogisticRegression(max_iter=300).fit(X.astype(np.float32), y), str(path))
    assert sniff(path) == "sklearn"
    r = forgeml.convert(path, X[:8].astype(np.float32), targets=["onnx"], passes=[], out_dir=tmp_path / "o")
    assert r.ok, r.parity.table()


def test_unknown_content_says_what_was_tried(tmp_path):
    path = tmp_path / "blob.jit"
    path.write_bytes(b"not a model at all")
    assert sniff(path) is None
    with pytest.raises(InputError, match=r"blob\.jit: no converter reads \.jit files and its content"):
        resolve(path)


@pytest.mark.slow
def test_keras_h5_under_odd_name_converts(tmp_path):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh")])
    h5 = tmp_path / "m.h5"
    model.save(str(h5))
    odd = tmp_path / "classifier.weights"
    odd.write_bytes(h5.read_bytes())
    assert sniff(odd) == "tensorflow"
    r = forgeml.convert(odd, np.ones((2, 4), np.float32), targets=["onnx"], passes=[], out_dir=tmp_path / "o")
    assert r.ok, r.parity.table()
