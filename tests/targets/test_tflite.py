"""tflite target: zoo models through onnx2tf and TFLiteConverter, judged in the real TFLite interpreter.

The conversions are shared in module-scoped fixtures (TensorFlow's import and onnx2tf take seconds);
the fp32 zoo:cnn run happens with the network, subprocesses and PATH closed, proving the route is
hermetic.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx2tf", reason="needs forgeml[tflite]")
pytest.importorskip("ai_edge_litert", reason="needs forgeml[tflite]")
pytest.importorskip("torch", reason="the zoo models are torch models")

from forgeml.errors import TargetError  # noqa: E402
from forgeml.targets.tflite.target import TFLiteConfig, variant_for  # noqa: E402
from forgeml.targets.tflite.convert import signature_keys  # noqa: E402
from forgeml.formats.tflite import TensorMap  # noqa: E402


class Closed:
    """Network, subprocesses and PATH closed; every attempt is recorded and refused."""

    def __init__(self, mp: pytest.MonkeyPatch, empty_dir: Path):
        self.attempts: list[str] = []

        def refuse(what):
            def f(*args, **kwargs):
                self.attempts.append(f"{what}{args[:2]!r}")
                raise OSError(f"{what} blocked by the test")
            return f

        mp.setattr(socket.socket, "connect", refuse("connect"))
        mp.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
        mp.setattr(socket, "create_connection", refuse("create_connection"))
        mp.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
        mp.setattr(subprocess, "Popen", refuse("Popen"))
        mp.setenv("PATH", str(empty_dir))


def _pipeline(src, *, targets=("tflite",), quantize=None, calibration=(), dynamic_batch=False, config=None,
              out: Path):
    from forgeml.converters import ImportOptions
    from forgeml.passes import DEFAULT_PASSES, make_pass
    from forgeml.pipeline.run import PipelineConfig, run
    from forgeml.pipeline.sources import resolve

    cfg = PipelineConfig(targets=tuple(targets), passes=tuple(make_pass(p) for p in DEFAULT_PASSES),
                         import_options=ImportOptions(dynamic_batch=dynamic_batch), quantize=quantize,
                         calibration=tuple(calibration),
                         target_configs={"tflite": config} if config is not None else {})
    return run(resolve(src), cfg, out, force=True)


def _calibration(tmp: Path, name: str, n: int = 16):
    """--calib data as a user gives it: an .npz keyed by input name, read by the CLI's loader."""
    from forgeml.parity.inputs import load_calibration
    from models_zoo import ZOO

    ex = ZOO[name].build().example_inputs
    rng = np.random.default_rng(7)
    arrays = {}
    for k, v in ex.items():
        shape = (n, *v.shape[1:])
        arrays[k] = (rng.normal(v.mean(), v.std(), size=shape) if v.dtype.kind == "f"
                     else rng.integers(v.min(), v.max() + 1, size=shape)).astype(v.dtype)
    path = tmp / f"{name}-calib.npz"
    np.savez(path, **arrays)
    return load_calibration(path)


def _stage(result, name="tflite") -> dict:
    return next(s for s in result.manifest["stages"] if s["name"] == name)


@pytest.fixture(scope="module")
def cnn_offline(tmp_path_factory):
    """zoo:cnn → onnx + tflite fp32 with the network, subprocesses and PATH closed, from an empty cwd."""
    work = tmp_path_factory.mktemp("offline")
    cwd, empty = work / "cwd", work / "empty-path"
    cwd.mkdir()
    empty.mkdir()
    from models_zoo import ZOO

    ZOO["cnn"].build()  # import torch & co. before closing the doors: only our run is under test
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        closed = Closed(mp, empty)
        result = _pipeline("zoo:cnn", targets=("onnx", "tflite"), out=work / "out")
    return result, closed.attempts, sorted(os.listdir(cwd))


@pytest.mark.slow
def test_cnn_fp32_offline_with_layout_map(cnn_offline):
    result, attempts, cwd_files = cnn_offline
    assert attempts == [] and cwd_files == []  # nothing fetched, nothing spawned, nothing dropped in cwd
    assert result.ok, result.errors
    st = _stage(result)
    row = st["parity"]["rows"][0]
    assert st["parity"]["profile"] == "fp32" and row["output"] == "logits" and row["max_abs"] < 1e-4
    assert st["parity"]["batches"] >= 4 and st["runtime"].startswith("ai-edge-litert")
    meta = st["metadata"]
    assert meta["variant"] == "fp32" and meta["route"].startswith("onnx2tf 1.28.8")
    assert meta["layout"]["x"] == {"signature": "x", "layout": "NCHW→NHWC", "tflite_shape": [2, 32, 32, 3],
                                   "tflite_dtype": "float32"}
    assert result.manifest["artifacts"]["tflite"]["path"] == "model.tflite"


@pytest.mark.slow
def test_the_guard_would_catch_onnx2tf_downloading(tmp_path):
    """The closed doors are real: onnx2tf's own downloader, called directly, is refused and recorded."""
    from onnx2tf.utils.common_functions import download_test_image_data

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        closed = Closed(mp, tmp_path)
        with pytest.raises(Exception):
            download_test_image_data()
    assert closed.attempts and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_runner_speaks_source_layout(cnn_offline):
    """The .tflite takes NHWC; the runner takes the source's NCHW and matches onnxruntime on it."""
    from forgeml.runtime.ort import ort_runner
    from forgeml.targets.tflite.runner import tflite_runner

    result = cnn_offline[0]
    run = tflite_runner(result.artifacts["tflite"].path)
    (detail,) = run.interpreter.get_signature_runner("serving_default").get_input_details().values()
    assert list(detail["shape"]) == [2, 32, 32, 3]
    x = np.random.default_rng(3).normal(size=(2, 3, 32, 32)).astype(np.float32)
    got = run({"x": x})["logits"]
    want = ort_runner(result.artifacts["onnx"].path)({"x": x})["logits"]
    assert got.shape == (2, 10) and np.abs(got - want).max() < 1e-4
    # The same array fed without the layout map (as raw NHWC data) gives different numbers.
    raw = run.interpreter.get_signature_runner("serving_default")(x=np.ascontiguousarray(x.reshape(2, 32, 32, 3)))
    assert np.abs(raw["logits"] - want).max() > 1e-2


@pytest.mark.slow
def test_inspect_shows_signature_and_mapping(cnn_offline, capsys):
    from forgeml.cli.app import main

    path = str(cnn_offline[0].artifacts["tflite"].path)
    assert main(["inspect", path, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    sig = info["signatures"]["serving_default"]
    assert sig["inputs"]["x"]["shape"] == [2, 32, 32, 3] and sig["outputs"]["logits"]["shape"] == [2, 10]
    assert info["ops"]["CONV_2D"] == 2 and info["variant"] == "fp32"
    (x,) = [t for t in info["forgeml_io"]["inputs"] if t["source"] == "x"]
    assert x["perm"] == [0, 2, 3, 1] and x["source_shape"] == [2, 3, 32, 32]
    assert main(["inspect", path]) == 0
    out = capsys.readouterr().out
    assert "NCHW→NHWC" in out and "signature serving_default input" in out


@pytest.mark.slow
@pytest.mark.parametrize("quantize,calib,variant,profile", [
    ("fp16", False, "fp16", "fp16"),
    ("int8", True, "int8", "int8"),
    ("int8", False, "int8-dynamic", "int8"),
])
def test_cnn_quantized_variants(tmp_path, quantize, calib, variant, profile):
    cal = _calibration(tmp_path, "cnn") if calib else ()
    result = _pipeline("zoo:cnn", quantize=quantize, calibration=cal, dynamic_batch=True, out=tmp_path / "out")
    st = _stage(result)
    assert result.ok, (result.errors, st.get("parity"))
    assert st["metadata"]["variant"] == variant and st["parity"]["profile"] == profile
    row = st["parity"]["rows"][0]
    assert row["cosine"] > 0.99 and row["top1"] >= 0.9
    if variant == "int8":
        assert st["metadata"]["calibration_samples"] == 16 and st["metadata"]["float_ops"] == {}
    if variant == "int8-dynamic":
        assert "without `quantize.calibration`" in st["metadata"]["why"]


@pytest.fixture(scope="module")
def transformer_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("transformer")
    return {
        "fp32": _pipeline("zoo:transformer", out=tmp / "fp32"),
        "int8": _pipeline("zoo:transformer", quantize="int8", calibration=_calibration(tmp, "transformer"),
                          dynamic_batch=True, out=tmp / "int8"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_transformer(transformer_runs, variant):
    result = transformer_runs[variant]
    st = _stage(result)
    assert result.ok, (result.errors, st.get("parity"))
    row = st["parity"]["rows"][0]
    assert st["metadata"]["variant"] == variant and st["parity"]["profile"] == variant
    assert st["metadata"]["layout"]["input_ids"]["tflite_dtype"] == "int64"
    if variant == "fp32":
        assert row["max_abs"] < 1e-4
    else:
        assert row["centered_cosine"] > 0.9 and st["metadata"]["float_ops"] == {}


@pytest.mark.slow
@pytest.mark.parametrize("quantize,calib,variant", [(None, False, "fp32"), ("int8", True, "int8")])
def test_zoo_keras_cnn_takes_the_keras_route(tmp_path, quantize, calib, variant):
    pytest.importorskip("keras")
    cal = _calibration(tmp_path, "keras_cnn") if calib else ()
    result = _pipeline("zoo:keras_cnn", quantize=quantize, calibration=cal, dynamic_batch=True, out=tmp_path / "o")
    st = _stage(result)
    assert result.ok, (result.errors, st.get("parity"))
    meta = st["metadata"]
    assert meta["variant"] == variant and meta["route"].startswith("Keras source → TFLiteConverter")
    assert all(v["layout"] == "same" for v in meta["layout"].values())  # Keras is channel-last already
    row = st["parity"]["rows"][0]
    assert row["max_abs"] < 1e-4 if variant == "fp32" else row["centered_cosine"] > 0.9


_UNLOWERABLE = '''
import numpy as np
import torch
from torch import nn


class Scramble(nn.Module):
    def forward(self, ids):
        return torch.bitwise_xor(ids, 85) % 64


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.scramble = Scramble()
        self.emb = nn.Embedding(64, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, ids):
        return self.head(self.emb(self.scramble(ids)).mean(1))


def build():
    torch.manual_seed(0)
    return Net().eval(), {"ids": np.arange(16, dtype=np.int64).reshape(2, 8)}
'''


@pytest.mark.slow
def test_op_that_cannot_be_lowered(tmp_path, capsys):
    """BitwiseXor has no onnx2tf lowering: exit 2, ONNX still written, the manifest names op, node, layer."""
    from forgeml.cli.app import main

    (tmp_path / "unlowerable.py").write_text(_UNLOWERABLE)
    out = tmp_path / "out"
    rc = main(["convert", f"python:{tmp_path / 'unlowerable.py'}:build", "--to", "onnx,tflite", "-o", str(out)])
    captured = capsys.readouterr()
    assert rc == 2 and "Traceback" not in captured.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert (out / "model.onnx").is_file() and "tflite" not in manifest["artifacts"] and not manifest["ok"]
    why = manifest["errors"]["tflite"]
    assert "BitwiseXor" in why and "node_bitwise_xor" in why and "scramble (unlowerable.Scramble)" in why
    assert not list(out.glob("*.tflite"))


@pytest.mark.slow
def test_keras_route_names_and_numbers():
    """Keras 3 model → TFLiteConverter directly: signature keyed by the source names, fp32 and int8 numbers."""
    keras = pytest.importorskip("keras")
    from forgeml.ir import Signature, TensorSpec
    from forgeml.targets.tflite import convert as tflite_convert
    from forgeml.targets.tflite import keras as tflite_keras
    from forgeml.formats.tflite import IOMap, embed
    from forgeml.targets.tflite.runner import tflite_runner

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), name="pixels")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.BatchNormalization()(x)
    out = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    sig = Signature((TensorSpec("image", (None, 16, 16, 3), "float32"),),
                    (TensorSpec("scores", (None, 4), "float32"),))
    ins, outs = tflite_keras.maps(model, sig)
    assert tflite_keras.is_keras(model) and tflite_keras.is_keras3(model)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 16, 16, 3)).astype(np.float32)
    ref = model.predict(x, verbose=0)
    cal = [{"image": rng.normal(size=(1, 16, 16, 3)).astype(np.float32)} for _ in range(8)]
    for variant, tol in (("fp32", 1e-4), ("int8", 0.2)):
        built = tflite_convert.convert(model, ins, outs, variant, calibration=cal, keras3=True)
        run = tflite_runner(embed(built.data, IOMap(tuple(built.inputs), tuple(built.outputs)), built.renames))
        assert run.interpreter.get_signature_list()["serving_default"] == {"inputs": ["image"],
                                                                            "outputs": ["scores"]}
        got = run({"image": x})["scores"]
        assert np.isfinite(got).all() and np.abs(got - ref).max() < tol * max(1.0, np.abs(ref).max())


def test_variant_follows_quantize():
    cfg = TFLiteConfig()
    assert variant_for(None, False, cfg)[0] == "fp32"
    assert variant_for("fp16", True, cfg)[0] == "fp16"
    assert variant_for("int8", True, cfg)[0] == "int8"
    assert variant_for("int8", False, cfg)[0] == "int8-dynamic"
    assert variant_for("int8-static", True, cfg)[0] == "int8"
    assert variant_for(None, False, TFLiteConfig(variant="fp16"))[0] == "fp16"
    with pytest.raises(TargetError, match="`quantize.calibration`"):
        variant_for("int8-static", False, cfg)
    with pytest.raises(TargetError, match="int4"):
        variant_for("int4", True, cfg)


def test_layout_map_round_trip_and_signature_keys():
    m = TensorMap("x", "x", (0, 2, 3, 1))
    a = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert m.to_tflite(a).shape == (2, 4, 5, 3) and np.array_equal(m.to_source(m.to_tflite(a)), a)
    assert m.layout == "NCHW→NHWC" and TensorMap("y", "y", None).layout == "same"
    assert signature_keys(["x", "input:0", "/a/b", "input_0"]) == ["x", "input_0", "t_a_b", "input_0_2"]


def test_inspect_rejects_a_file_that_is_not_tflite(tmp_path, capsys):
    from forgeml.cli.app import main

    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"\x00" * 64)
    assert main(["inspect", str(bad)]) == 2
    assert "not a TFLite model" in capsys.readouterr().err
