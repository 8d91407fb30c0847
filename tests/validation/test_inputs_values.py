"""Parity batches are derived from inputs the model takes: integer inputs that carry a value (a
shape, a count) are kept as given, ``-1`` dims are dynamic, and a model without inputs is refused in
one line. Tiny hand-built ONNX models, run in onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

import forgeml
from forgeml.errors import InputError
from forgeml.ir import Signature, TensorSpec
from forgeml.parity.inputs import check_inputs, random_like

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _save(tmp_path, nodes, inputs, outputs, name="m.onnx", inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    path = tmp_path / name
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _reshape_model(tmp_path):
    """y = Reshape(x, shape): the int64 input is a shape, not data; [0, 2) values break it."""
    return _save(tmp_path, [helper.make_node("Reshape", ["x", "shape"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
                  helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])])


def _range_model(tmp_path):
    """y = x * Range(0, n, 1): the limit n is a count."""
    return _save(tmp_path, [helper.make_node("Range", ["zero", "n", "one"], ["r"]),
                            helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
                            helper.make_node("Mul", ["x", "rf"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
                  helper.make_tensor_value_info("n", TensorProto.INT64, [])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
                 inits=[helper.make_tensor("zero", TensorProto.INT64, [], [0]),
                        helper.make_tensor("one", TensorProto.INT64, [], [1])])


@pytest.mark.parametrize("batches", [0, 3])
def test_integer_shape_input_from_user_inputs(tmp_path, batches):
    path = _reshape_model(tmp_path)
    user = {"x": np.arange(12, dtype=np.float32).reshape(2, 6), "shape": np.array([3, 4], np.int64)}
    r = forgeml.convert(path, targets=["onnx"], passes=[], out_dir=tmp_path / "o",
                        parity=forgeml.ParityOptions(inputs=(user,), batches=batches))
    assert r.ok, r.parity.table()
    assert r.manifest["stages"][0]["parity"]["batches"] == 1 + batches


def test_range_limit_kept_as_given(tmp_path):
    path = _range_model(tmp_path)
    user = {"x": np.array([2.0], np.float32), "n": np.array(7, np.int64)}
    r = forgeml.convert(path, targets=["onnx"], passes=[], out_dir=tmp_path / "o",
                        parity=forgeml.ParityOptions(inputs=(user,), batches=2))
    assert r.ok, r.parity.table()


def test_random_like_keeps_integers_and_perturbs_floats():
    sig = Signature((TensorSpec("x", ("batch", 3), "float32"), TensorSpec("sr", (), "int64"),
                     TensorSpec("ids", ("batch", 4), "int64")), ())
    ex = {"x": np.ones((2, 3), np.float32), "sr": np.array(16000, np.int64),
          "ids": np.array([[5, 9, 11, 3], [7, 7, 2, 1]], np.int64)}
    out = random_like(ex, sig, seed=1, batch=3)
    assert out["sr"] == 16000
    assert out["ids"].shape == (3, 4) and set(out["ids"].ravel()) <= set(ex["ids"].ravel())
    assert out["x"].shape == (3, 3) and not np.array_equal(out["x"], np.ones((3, 3), np.float32))
    shape = {"x": np.ones((2, 6), np.float32), "shape": np.array([3, 4], np.int64), "axis": np.array([[1, 1]])}
    sig2 = Signature((TensorSpec("x", (2, 6), "float32"), TensorSpec("shape", (2,), "int64"),
                      TensorSpec("axis", (1, 2), "int64")), ())
    got = random_like(shape, sig2, seed=2)
    assert np.array_equal(got["shape"], [3, 4]) and np.array_equal(got["axis"], [[1, 1]])


def test_minus_one_dims_are_dynamic(tmp_path):
    path = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, -1])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 3, -1])])
    user = {"x": np.random.default_rng(0).normal(size=(2, 3, 5)).astype(np.float32)}
    r = forgeml.convert(path, targets=["onnx"], passes=[], out_dir=tmp_path / "o",
                        parity=forgeml.ParityOptions(inputs=(user,), batches=1))
    assert r.ok, r.parity.table()
    check_inputs(user, Signature((TensorSpec("x", (-1, 3, -1), "float32"),), ()), "inputs")
    with pytest.raises(InputError, match="expects \\(\\?, 3, \\?\\)"):
        check_inputs({"x": np.zeros((2, 4, 5), np.float32)},
                     Signature((TensorSpec("x", (-1, 3, -1), "float32"),), ()), "inputs")


def test_model_without_inputs_is_one_line(tmp_path):
    path = _save(tmp_path, [helper.make_node("Constant", [], ["y"], value=helper.make_tensor(
        "c", TensorProto.FLOAT, [1], [1.0]))], [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    with pytest.raises(InputError, match="has no inputs") as e:
        forgeml.convert(path, targets=["onnx"], out_dir=tmp_path / "o")
    assert "\n" not in str(e.value)
