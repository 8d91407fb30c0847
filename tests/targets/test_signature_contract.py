"""signature.json checked at load: every runner a target opens from a package directory checks the
inputs it is called with (name, dtype, rank) against the signature.json beside the artifact, and says
what is wrong in one line naming the file, the input, and expected vs got. One real conversion
(zoo:cnn to onnx, safetensors, tflite and a Triton repository) serves every kind here; gguf's check
is in test_gguf.py and torch-aoti's in test_torch_aoti_target.py (they need their own sources)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import forgeml
from forgeml.errors import InputError
from forgeml.targets import TARGETS
from forgeml.targets.base import OpenContext

HAS_TFLITE = all(importlib.util.find_spec(m) for m in ("onnx2tf", "ai_edge_litert"))


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    targets = ["onnx", "safetensors", "triton"] + (["tflite"] if HAS_TFLITE else [])
    r = forgeml.convert("zoo:cnn", targets=targets, out_dir=tmp_path_factory.mktemp("contract") / "out",
                        parity=forgeml.ParityOptions(batches=0))
    assert r.exit_code == 0, r.errors
    return r.out_dir


def _open(package: Path, kind: str):
    """The runner forgeml builds from the artifact file, as `forgeml parity` and the MLflow wrapper do."""
    if kind == "safetensors":
        from forgeml.pipeline.compare import LoadContext, load_side

        return load_side(str(package / "model.safetensors"), LoadContext(model="zoo:cnn")).runner
    path = {"onnx": "model.onnx", "tflite": "model.tflite", "triton": "model_repository/cnn/config.pbtxt"}[kind]
    return TARGETS[kind].open(package / path, OpenContext()).runner


KINDS = ["onnx", "safetensors", "triton",
         pytest.param("tflite", marks=pytest.mark.skipif(not HAS_TFLITE, reason="needs forgeml[tflite]"))]
ARTIFACT = {"onnx": "model.onnx", "safetensors": "model.safetensors", "triton": "model.onnx",
            "tflite": "model.tflite"}


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_name_dtype_or_rank_is_one_line_naming_file_and_input(package, kind):
    spec = json.loads((package / "signature.json").read_text())["inputs"][0]
    assert spec["name"] == "x" and spec["dtype"] == "float32"
    x = np.random.default_rng(0).standard_normal(spec["shape"]).astype(np.float32)
    run = _open(package, kind)
    assert set(run({"x": x})) == {"logits"}  # the right inputs still run
    cases = {
        "dtype": ({"x": x.astype(np.float64)}, ["'x'", "float64", "expected float32"]),
        "rank": ({"x": x[0]}, ["'x'", "rank 3", "expected rank 4"]),
        "name": ({"image": x}, ["unknown input 'image'", "'x'"]),
        "missing": ({}, ["input 'x' is missing", "float32"]),
    }
    for why, (inputs, words) in cases.items():
        with pytest.raises(InputError) as e:
            run(inputs)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(ARTIFACT[kind] + ":"), (why, msg)
        for w in words:
            assert w in msg, (why, w, msg)


def test_a_bare_file_without_signature_json_is_not_checked(package, tmp_path):
    """Outside a package (no signature.json beside it) the runtime's own checks are all there is."""
    bare = tmp_path / "model.onnx"
    shutil.copy(package / "model.onnx", bare)
    run = TARGETS["onnx"].open(bare, OpenContext()).runner
    assert not hasattr(run, "contract")
    with pytest.raises(forgeml.TargetError):  # onnxruntime's own refusal, not the contract's
        run({"x": np.zeros((2, 3, 32, 32), np.float64)})


def test_a_corrupt_signature_json_is_one_line(package, tmp_path):
    shutil.copy(package / "model.onnx", tmp_path / "model.onnx")
    (tmp_path / "signature.json").write_text('{"inputs": [{"name": "x"}]}')
    with pytest.raises(InputError, match=r"signature\.json: not a readable forgeml signature\.json"):
        TARGETS["onnx"].open(tmp_path / "model.onnx", OpenContext())
