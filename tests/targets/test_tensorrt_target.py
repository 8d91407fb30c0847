"""tensorrt target: profiles, build plans, the readiness gate, the missing-TensorRT path end to end, and
(only where TensorRT and an NVIDIA GPU are present) real engines with parity. CI has neither, so the
engine tests skip there with the reason."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from onnx import TensorProto, helper

from forgeml.cli.app import main
from forgeml.errors import InputError, TargetError
from forgeml.ir import IRModel, Provenance, Signature, TensorSpec, signature_of
from forgeml.targets import TARGETS
from forgeml.targets.base import TargetContext
from forgeml.cli.targets import tensorrt_config as config_from_cli
from forgeml.targets.tensorrt.target import TensorRTConfig, TrtProfile, plan_for, resolve_profiles


def _has_tensorrt_and_gpu() -> tuple[bool, str]:
    if importlib.util.find_spec("tensorrt") is None:
        return False, "TensorRT is not installed (its libraries come only from NVIDIA's index; CI has no GPU)"
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA GPU visible"
    return True, ""


HAVE_TRT, WHY_NOT = _has_tensorrt_and_gpu()


def _sig(*inputs):
    return Signature(tuple(TensorSpec(n, s, "float32") for n, s in inputs), (TensorSpec("y", (), "float32"),))


# --- profiles ------------------------------------------------------------------------------------

def test_profile_parse():
    p = TrtProfile.parse("x:1x3x32x32:4x3x32x32:16x3x32x32")
    assert (p.name, p.min, p.opt, p.max) == ("x", (1, 3, 32, 32), (4, 3, 32, 32), (16, 3, 32, 32))
    assert TrtProfile.parse("a:b:1:2:3").name == "a:b"  # input names may hold colons
    for bad in ("x:1x3:2x3", "x:1x3:2x3:1x3", "x:1x3:2:4x3", "x:ax3:1x3:1x3", ":1:1:1"):
        with pytest.raises(InputError):
            TrtProfile.parse(bad)


def test_profiles_derive_from_parity_inputs():
    sig = _sig(("x", ("batch", 3)), ("s", (2,)))
    sets = [{"x": np.zeros((2, 3)), "s": np.zeros(2)}, {"x": np.zeros((5, 3)), "s": np.zeros(2)}]
    got = resolve_profiles(sig, sets)
    assert list(got) == ["x"]  # static inputs need no profile
    assert (got["x"].min, got["x"].opt, got["x"].max) == ((1, 3), (2, 3), (5, 3))


def test_user_profile_is_checked_against_model_and_parity_inputs():
    sig = _sig(("x", ("batch", 3)))
    sets = [{"x": np.zeros((2, 3))}, {"x": np.zeros((9, 3))}]
    with pytest.raises(TargetError, match="outside the profile"):
        resolve_profiles(sig, sets, (TrtProfile.parse("x:1x3:2x3:8x3"),))
    with pytest.raises(TargetError, match="fixed at 3"):
        resolve_profiles(sig, sets, (TrtProfile.parse("x:1x1:2x3:16x3"),))
    with pytest.raises(TargetError, match="not model inputs"):
        resolve_profiles(sig, sets, (TrtProfile.parse("nope:1x3:2x3:16x3"),))
    ok = resolve_profiles(sig, sets, (TrtProfile.parse("x:1x3:4x3:16x3"),))
    assert ok["x"].opt == (4, 3)


def test_config_from_cli():
    assert config_from_cli([], None, None, []) is None
    cfg = config_from_cli(["x:1x3:2x3:4x3"], 256, None, ["MyOp"])
    assert isinstance(cfg, TensorRTConfig) and cfg.workspace_mib == 256 and cfg.plugins == ("MyOp",)
    with pytest.raises(InputError, match="one profile per input"):
        config_from_cli(["x:1:1:1", "x:1:2:2"], None, None, [])


# --- build plans -----------------------------------------------------------------------------------

def _ir(nodes, inputs, outputs, inits=()):
    import onnx_ir

    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model = onnx_ir.serde.deserialize_model(proto)
    return IRModel(model, signature_of(model), Provenance("onnx", "test", "", "onnx"))


def _relu_ir():
    vi = helper.make_tensor_value_info
    return _ir([helper.make_node("Relu", ["x"], ["y"])], [vi("x", TensorProto.FLOAT, [2, 3])],
               [vi("y", TensorProto.FLOAT, [2, 3])])


def test_plan_follows_quantize():
    ir = _relu_ir()
    assert plan_for(None, ir).clear == ("TF32",) and plan_for(None, ir).precision == "fp32"
    fp16 = plan_for("fp16", ir)
    assert fp16.flags == ("FP16",) and fp16.source == "float_ir" and fp16.precision == "fp16"
    with pytest.raises(TargetError, match="no dynamic quantization"):
        plan_for("int8", ir)
    with pytest.raises(TargetError, match="QuantizeLinear"):
        plan_for("int8-static", ir)  # no QDQ nodes in the graph
    with pytest.raises(TargetError, match="int4"):
        plan_for("int4", ir)


def test_readiness_blocks_before_any_tensorrt_call(tmp_path):
    vi = helper.make_tensor_value_info
    ir = _ir([helper.make_node("Unique", ["x"], ["y"])], [vi("x", TensorProto.FLOAT, [5])],
             [vi("y", TensorProto.FLOAT, [None])])
    ctx = TargetContext(float_ir=ir, input_sets=({"x": np.arange(5, dtype=np.float32)},))
    with pytest.raises(TargetError, match="not ready for TensorRT.*Unique.*check-trt"):
        TARGETS["tensorrt"].build(ir, tmp_path, ctx)
    assert not list(tmp_path.iterdir())


def test_targets_keep_no_per_model_state():
    """Target objects are shared by every run in the process: what a runner needs rides on the Artifact."""
    for name, target in TARGETS.items():
        assert not vars(target), f"{name} holds instance state {sorted(vars(target))}"


# --- without TensorRT: the other targets still complete ----------------------------------------------

@pytest.mark.skipif(HAVE_TRT, reason="TensorRT and a GPU are present: the engine tests below cover this run")
def test_missing_tensorrt_fails_only_its_own_target(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["convert", "zoo:cnn", "--to", "onnx,tensorrt", "-o", str(out), "--parity-batches", "1"])
    assert rc == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ok"] is False
    assert list(manifest["artifacts"]) == ["onnx"] and (out / "model.onnx").is_file()
    assert not (out / "model.engine").exists()  # nothing claimed as built
    why = manifest["errors"]["tensorrt"]
    assert ("TensorRT is not installed" in why or "no CUDA GPU" in why) and "pip install 'forgeml[tensorrt]'" in why
    assert "readiness check passed" in why
    onnx_stage = next(s for s in manifest["stages"] if s["name"] == "onnx")
    assert onnx_stage["parity"]["passed"] is True
    assert "forgeml[tensorrt]" in capsys.readouterr().out.replace("\n", "")


# --- with TensorRT and a GPU ---------------------------------------------------------------------------

gpu = pytest.mark.skipif(not HAVE_TRT, reason=WHY_NOT)


@pytest.mark.gpu
@gpu
def test_engine_fp32_parity_and_manifest(tmp_path):
    import forgeml

    cache = tmp_path / "timing.cache"
    cfg = TensorRTConfig(timing_cache=cache)
    r = forgeml.convert("zoo:cnn", targets=["onnx", "tensorrt"], out_dir=tmp_path / "a",
                        target_configs={"tensorrt": cfg})
    assert r.ok, r.errors
    stage = next(s for s in r.manifest["stages"] if s["name"] == "tensorrt")
    meta = stage["metadata"]
    assert meta["tensorrt_version"] and meta["compute_capability"]
    assert stage["parity"]["passed"] and stage["parity"]["profile"] == "fp32"
    assert max(meta["vs_onnxruntime_max_abs"].values()) < 1e-3
    assert cache.is_file() and meta["timing_cache"]["saved_bytes"] > 0
    again = forgeml.convert("zoo:cnn", targets=["tensorrt"], out_dir=tmp_path / "b", target_configs={"tensorrt": cfg})
    meta2 = next(s for s in again.manifest["stages"] if s["name"] == "tensorrt")["metadata"]
    assert meta2["timing_cache"]["reused_bytes"] > 0


@pytest.mark.gpu
@gpu
def test_engine_dynamic_batch_profile_and_fp16(tmp_path):
    from forgeml.pipeline.run import PipelineConfig, run
    from forgeml.converters import ImportOptions
    from forgeml.passes import make_pass
    from forgeml.pipeline.sources import resolve

    cfg = TensorRTConfig(profiles=(TrtProfile.parse("x:1x3x32x32:2x3x32x32:8x3x32x32"),),
                         timing_cache=tmp_path / "t.cache")
    config = PipelineConfig(targets=("tensorrt",), passes=tuple(make_pass(p) for p in ("check", "simplify")),
                            import_options=ImportOptions(dynamic_batch=True), quantize="fp16",
                            target_configs={"tensorrt": cfg})
    r = run(resolve("zoo:cnn"), config, tmp_path / "out")
    assert r.ok, r.errors
    stage = next(s for s in r.manifest["stages"] if s["name"] == "tensorrt")
    assert stage["parity"]["profile"] == "fp16" and stage["metadata"]["builder_flags"] == ["FP16"]
    assert stage["metadata"]["profiles"]["x"]["max"] == [8, 3, 32, 32]
