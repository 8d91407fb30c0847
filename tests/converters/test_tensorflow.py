"""TensorFlow/Keras → ONNX with Keras/TensorFlow itself as the reference: the zoo, every Keras model
kind, .keras/.h5 files, SavedModel signatures, and the bad inputs users hit.

TensorFlow takes ~10 s to import here, so the module is marked slow and shares one import.
"""

from __future__ import annotations

import numpy as np
import pytest

import forgeml
import forgeml.pipeline.sources
from forgeml.cli.app import main
from forgeml.errors import InputError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def keras():
    pytest.importorskip("tf2onnx")
    from models_zoo.keras_models import _keras

    return _keras()


def _check_rows(result, limit=1e-4):
    assert result.ok, result.parity.table()
    for stage in result.manifest["stages"]:
        for row in stage["parity"]["rows"]:
            assert row["passed"] and row["max_abs"] < limit, (stage["name"], row)


@pytest.mark.parametrize("name", ["keras_cnn", "keras_two_inputs"])
def test_zoo_to_onnx_and_safetensors(keras, tmp_path, name):
    from safetensors.numpy import load_file

    result = forgeml.convert(f"zoo:{name}", targets=["onnx", "safetensors"], out_dir=tmp_path / "out")
    _check_rows(result)
    m = result.manifest
    assert m["source"]["kind"] == "tensorflow" and m["stages"][0]["parity"]["reference"].startswith("keras 3")
    assert [s["name"] for s in m["stages"]] == ["tensorflow->onnx", "check", "simplify", "cleanup", "onnx",
                                                "safetensors"]
    tensors = load_file(str(result.artifacts["safetensors"].path))
    # names in the file are Keras's own weight paths, values the model's own
    keras_model = result.manifest and forgeml.pipeline.sources.resolve(f"zoo:{name}").model
    own = {w.path: np.asarray(w.numpy()) for w in keras_model.weights}
    assert set(tensors) == set(own) and all(t.shape == own[k].shape for k, t in tensors.items())
    if name == "keras_cnn":
        assert {"keras_cnn/conv1/kernel", "keras_cnn/bn2/moving_variance", "keras_cnn/logits/bias"} <= set(tensors)
        assert m["signature"]["inputs"][0]["name"] == "image"
    else:
        assert [o["name"] for o in m["signature"]["outputs"]] == ["scores", "value"]
        assert {"hidden/kernel", "scores/kernel", "value/bias"} <= set(tensors)
    # The file's weights, loaded back into the Keras model, give the model's own numbers.
    assert result.manifest["stages"][-1]["parity"]["rows"][0]["max_abs"] == 0.0


def test_sequential_without_name_and_subclassed(keras, tmp_path):
    seq = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(3)])
    result = forgeml.convert(seq, passes=[], out_dir=tmp_path / "seq")  # inputs from the model itself
    _check_rows(result)
    assert [i["name"] for i in result.manifest["signature"]["inputs"]] == ["input"]

    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    h = keras.layers.Concatenate()([a, b])
    dict_io = keras.Model({"a": a, "b": b}, {"p": keras.layers.Dense(2)(h), "q": keras.layers.Dense(1)(h)})
    result = forgeml.convert(dict_io, passes=[], out_dir=tmp_path / "dict")
    _check_rows(result)
    sig = result.manifest["signature"]
    assert [i["name"] for i in sig["inputs"]] == ["a", "b"] and [o["name"] for o in sig["outputs"]] == ["p", "q"]

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.a = keras.layers.Dense(8, activation="gelu")
            self.b = keras.layers.Dense(2)

        def call(self, x):
            return self.b(self.a(x))

    x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    sub = Sub()
    result = forgeml.convert(sub,
                             x,
                             passes=[],
                             out_dir=tmp_path / "sub",
                             options=forgeml.ImportOptions(dynamic_batch=True))
    _check_rows(result)
    assert result.manifest["signature"]["inputs"][0]["shape"] == ["batch", 5]
    assert result.manifest["stages"][0]["parity"]["batches"] == 4  # batches of 3, 4, 5, 6 rows
    with pytest.raises(InputError, match="no known input signature"):
        forgeml.convert(Sub(), passes=[], out_dir=tmp_path / "unbuilt")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_files(keras, tmp_path, suffix):
    from models_zoo.keras_models import build_two_inputs

    build = build_two_inputs()
    path = tmp_path / f"model{suffix}"
    build.model.save(path)
    assert main(["convert", str(path), "-o", str(tmp_path / "out"), "--passes", "", "-t", "onnx,safetensors"]) == 0
    result = forgeml.convert(str(path), targets=["onnx"], passes=[], out_dir=tmp_path / "out2")
    _check_rows(result)
    assert result.manifest["source"]["ref"] == str(path)


def test_saved_model_signatures(keras, tmp_path):
    import tensorflow as tf

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.nn.relu(tf.matmul(x, self.w))}

        @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32, name="x")])
        def double(self, x):
            return {"z": 2.0 * tf.matmul(x, self.w)}

    module = Module()
    path = tmp_path / "sm"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve, "double": module.double})
    result = forgeml.convert(str(path), targets=["onnx"], passes=[], out_dir=tmp_path / "a")
    _check_rows(result)
    assert [o["name"] for o in result.manifest["signature"]["outputs"]] == ["y"]
    assert main(["convert", str(path), "--signature", "double", "-o", str(tmp_path / "b"), "--passes", ""]) == 0
    double = forgeml.convert(str(path),
                             targets=["onnx"],
                             passes=[],
                             out_dir=tmp_path / "b2",
                             options=forgeml.ImportOptions(signature="double"))
    _check_rows(double)
    assert [o["name"] for o in double.manifest["signature"]["outputs"]] == ["z"]
    assert main(["convert", str(path), "--signature", "nope", "-o", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "c").exists()
    with pytest.raises(InputError, match="no signature 'nope'.*double, serving_default"):
        from forgeml.converters import ImportOptions
        from forgeml.converters.tensorflow import TensorflowConverter

        TensorflowConverter().convert(path, None, str(path), ImportOptions(signature="nope"))
    # A Keras model exported as a SavedModel converts too.
    from models_zoo.keras_models import build_cnn

    exported = tmp_path / "exported"
    build_cnn().model.export(str(exported), verbose=False)
    _check_rows(forgeml.convert(str(exported), targets=["onnx"], passes=[], out_dir=tmp_path / "d"))


def test_file_that_is_not_a_model(keras, tmp_path):
    bad = tmp_path / "notes.keras"
    bad.write_bytes(b"not a zip archive at all")
    assert main(["convert", str(bad), "-o", str(tmp_path / "out")]) == 2
    weights_only = tmp_path / "w.weights.h5"
    seq = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    seq.save_weights(weights_only)
    renamed = tmp_path / "w.h5"
    renamed.write_bytes(weights_only.read_bytes())
    with pytest.raises(InputError, match="not a loadable Keras model"):
        forgeml.convert(str(renamed), out_dir=tmp_path / "out2")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_captured_constants_are_not_graph_inputs(keras, tmp_path):
    """Keras 3's Normalization keeps a given mean/variance as plain tensors the traced function captures
    (keras.applications.EfficientNetV2 does this): they are frozen into the graph, never extra inputs."""
    x = keras.Input((6, 6, 3), name="image")
    h = keras.layers.Normalization(mean=[0.5, 0.1, -0.2], variance=[0.25, 4.0, 1.5])(x)
    h = keras.layers.Conv2D(4, 3)(h)
    model = keras.Model(x, keras.layers.GlobalAveragePooling2D(name="pooled")(h))
    example = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype(np.float32)
    result = forgeml.convert(model, example, passes=[], out_dir=tmp_path / "out")
    _check_rows(result)
    sig = result.manifest["signature"]
    assert [i["name"] for i in sig["inputs"]] == ["image"] and [o["name"] for o in sig["outputs"]] == ["pooled"]
