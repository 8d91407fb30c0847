"""int8-static planned per runtime: the TensorRT plan writes Q/DQ that check-trt accepts, the CPU plan keeps
onnxruntime's choices; both on real onnxruntime numbers."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import onnx.numpy_helper
import pytest
from tests.passes.conftest import bound_inputs, cosine, mlp_proto, run_proto

from forgeml.passes import from_proto, to_proto
from forgeml.passes.modes import quantize_pipeline
from forgeml.passes.precision.cpu_features import int8_settings
from forgeml.passes.precision.plan import int8_static_plan, runtime_for, variant_runtimes
from forgeml.passes.precision.quantize import Int8StaticPass
from forgeml.targets.tensorrt.readiness import check_model


def _zero_points(proto) -> list[np.ndarray]:
    inits = {t.name: t for t in proto.graph.initializer}
    return [onnx.numpy_helper.to_array(inits[n.input[2]]) for n in proto.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits]


def test_runtime_follows_the_targets():
    """The IR's int8-static serves onnxruntime when a target runs it there; TensorRT then gets a variant."""
    assert runtime_for(("onnx", "tensorrt")) == "onnxruntime-cpu" and variant_runtimes(("onnx", "tensorrt")) == ["tensorrt"]
    assert runtime_for(("tensorrt",)) == "tensorrt" and variant_runtimes(("tensorrt",)) == []
    assert runtime_for(("onnx", "safetensors")) == "onnxruntime-cpu" and variant_runtimes(("onnx", "triton")) == []
    assert variant_runtimes(("onnx", "tflite")) == []  # the tflite target quantizes by itself
    [p] = quantize_pipeline("int8-static", calib_synthetic=True, targets=("onnx", "tensorrt"))
    assert p.config.runtime == "onnxruntime-cpu"
    [p] = quantize_pipeline("int8-static", calib_synthetic=True, targets=("tensorrt",))
    assert p.config.runtime == "tensorrt"


def test_tensorrt_plan_is_symmetric_signed_whatever_the_cpu():
    p = int8_static_plan("tensorrt", activation_type="uint8", reduce_range=True)  # CPU overrides do not apply
    assert (p.activation_type, p.weight_type) == ("int8", "int8")
    assert p.activation_symmetric and p.weight_symmetric and p.per_channel
    assert not p.reduce_range and not p.quantize_bias
    cpu, s = int8_static_plan("onnxruntime-cpu"), int8_settings()
    assert (cpu.activation_type, cpu.reduce_range, cpu.per_channel) == (s.activation_type, s.reduce_range, s.per_channel)


def test_tensorrt_plan_writes_qdq_check_trt_accepts(x_batch):
    proto = mlp_proto()
    result = Int8StaticPass(runtime="tensorrt").bind(bound_inputs(proto, calibration=8))(from_proto(proto))
    out = to_proto(result.model)
    zps = _zero_points(out)
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    readiness = check_model(out)
    assert readiness.ready, [f.line() for f in readiness.blocking]
    # judged as TensorRT computes it (int32 accumulation, exact): onnxruntime's fused CPU kernels on AVX2
    # saturate s8 x s8 pair sums (cosine 0.9937 under an emulated AVX2 Zen 3), which says nothing of TensorRT
    assert cosine(run_proto(proto, x_batch), run_proto(out, x_batch, exact=True)) > 0.999
    plan = result.details["settings"]["plan"]
    assert plan["runtime"] == "tensorrt" and plan["activation_symmetric"] and plan["cpu"]


def test_cpu_plan_keeps_the_cpu_choice(x_batch):
    proto = mlp_proto()
    result = Int8StaticPass().bind(bound_inputs(proto, calibration=8))(from_proto(proto))
    out = to_proto(result.model)
    act = int8_settings().activation_type
    assert {z.dtype for z in _zero_points(out)} >= {np.dtype(act)}
    assert result.details["settings"]["plan"]["runtime"] == "onnxruntime-cpu"
    if act == "uint8":  # the asymmetric CPU form is what TensorRT refuses: the plan is what makes the difference
        assert not check_model(out).ready


@pytest.mark.slow
def test_cli_cnn_int8_static_for_tensorrt_passes_check_trt(tmp_path, capsys):
    """onnx and tensorrt each get their own int8: model.onnx the CPU plan, the engine the symmetric s8 variant,
    which the tensorrt stage's readiness check (check-trt's) accepts before any engine is built."""
    from forgeml.cli.app import main

    out = tmp_path / "out"
    rc = main(["convert", "zoo:cnn", "--to", "onnx,tensorrt", "--quantize", "int8-static", "--calib-synthetic",
               "-o", str(out)])
    printed = capsys.readouterr().out.replace("\n", " ")
    manifest = json.loads((out / "manifest.json").read_text())
    stages = {s["name"]: s for s in manifest["stages"]}
    assert stages["int8-static"]["details"]["settings"]["plan"]["runtime"] == "onnxruntime-cpu"
    trt_plan = stages["int8-static[tensorrt]"]["details"]["settings"]["plan"]
    assert trt_plan["runtime"] == "tensorrt" and trt_plan["activation_type"] == "int8"
    assert "parity" in stages["int8-static[tensorrt]"]
    if importlib.util.find_spec("tensorrt") is None:
        assert rc == 2  # only the engine build fails: no TensorRT here
        assert "TensorRT is not installed" in printed
        assert "the static readiness check passed: ready for TensorRT" in stages["tensorrt"]["error"]
    assert [(p["runtime"], p["stage"]) for p in manifest["quantize_plans"]] == [
        ("onnxruntime-cpu", "int8-static"), ("tensorrt", "int8-static[tensorrt]")]
    ready = main(["check-trt", str(out / "model.onnx")])
    if int8_settings().activation_type == "uint8":  # the CPU's own int8, which TensorRT would refuse
        assert ready != 0


def test_plans_per_runtime_say_which_int8_each_target_gets():
    from forgeml.passes.precision.plan import plans_for

    only_cpu = plans_for(("onnx", "triton", "safetensors"))
    assert [p.runtime for p in only_cpu] == ["onnxruntime-cpu"]
    assert only_cpu[0].targets == ("onnx", "triton") and only_cpu[0].own_plan and only_cpu[0].stage == "int8-static"
    mixed = {p.runtime: p for p in plans_for(("onnx", "tensorrt", "tflite"))}
    assert set(mixed) == {"onnxruntime-cpu", "tensorrt", "tflite"}
    assert all(p.own_plan and p.planned_for == p.runtime for p in mixed.values())
    assert mixed["tensorrt"].plan.activation_symmetric and mixed["tensorrt"].stage == "int8-static[tensorrt]"
    assert "proxy for TensorRT" in mixed["tensorrt"].judged_on
    assert mixed["tflite"].made_by.startswith("the tflite target") and mixed["tflite"].stage == "tflite"
    assert mixed["onnxruntime-cpu"].stage == "int8-static"
    alone = plans_for(("tensorrt",))
    assert [(p.runtime, p.stage, p.own_plan) for p in alone] == [("tensorrt", "int8-static", True)]
