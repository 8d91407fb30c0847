"""int8-static planned per runtime: ``--to onnx,tensorrt`` makes the onnxruntime-CPU int8 for onnx and a
symmetric s8 variant for tensorrt, each its own stage judged on its own numbers, both in the manifest and
reports. Real onnxruntime runs on a tiny graph; nothing asserted depends on this CPU's int8 kernels."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from tests.passes.conftest import mlp_proto

from forgeml.api import convert
from forgeml.options import ParityOptions, QuantizeOptions
from forgeml.passes.precision.cpu_features import int8_settings
from forgeml.targets.tensorrt.readiness import check_model


def _zero_point_types(proto) -> set:
    inits = {t.name: t for t in proto.graph.initializer}
    return {onnx.numpy_helper.to_array(inits[n.input[2]]).dtype for n in proto.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits}


def test_onnx_and_tensorrt_each_get_their_own_int8_stage(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    onnx.save(mlp_proto(), str(src))
    example = {"x": np.random.default_rng(3).normal(size=(4, 16)).astype(np.float32)}
    result = convert(str(src), example, targets=["onnx", "tensorrt"], out_dir=tmp_path / "o",
                     quantize=QuantizeOptions("int8-static", synthetic_calibration=True, min_top1=0.0),
                     parity=ParityOptions(held_out_samples=16))
    m = result.record
    names = [st.name for st in m.stages]
    assert len(names) == len(set(names))  # one line per stage in every table
    cpu, trt = m.stage("int8-static"), m.stage("int8-static[tensorrt]")
    assert cpu.details.settings["plan"]["runtime"] == "onnxruntime-cpu"
    assert trt.details.settings["plan"]["runtime"] == "tensorrt"
    assert names.index("int8-static[tensorrt]") < names.index("onnx") < names.index("tensorrt")
    # each variant has its own parity verdict, on the same inputs, under the int8 profile
    for st in (cpu, trt):
        assert st.parity is not None and st.parity.profile == "int8" and st.parity.batches == cpu.parity.batches
    assert any("proxy for TensorRT" in n for n in trt.notes)
    # the onnx artifact is the CPU plan's graph; the tensorrt stage was built from the variant
    written = onnx.load(str(tmp_path / "o" / "model.onnx"))
    assert np.dtype(int8_settings().activation_type) in _zero_point_types(written)
    assert any("int8-static[tensorrt]" in n for n in m.stage("tensorrt").notes)
    if importlib.util.find_spec("tensorrt") is None:
        # no engine here: the stage fails on the missing runtime only, after the readiness check passed
        assert "the static readiness check passed: ready for TensorRT" in m.errors["tensorrt"]
        assert result.exit_code == 2
    if int8_settings().activation_type == "uint8":
        assert not check_model(written).ready  # what TensorRT would have refused, had it been given model.onnx
    plans = {q.runtime: q for q in m.quantize_plans}
    assert plans["onnxruntime-cpu"].stage == "int8-static" and plans["onnxruntime-cpu"].targets == ["onnx"]
    assert plans["tensorrt"].stage == "int8-static[tensorrt]" and plans["tensorrt"].own_plan
    assert plans["tensorrt"].plan.activation_type == "int8" and plans["tensorrt"].plan.activation_symmetric
    md = (tmp_path / "o" / "report.md").read_text()
    from forgeml.cli.app import _print_summary

    _print_summary(result)
    printed = capsys.readouterr().out
    # the variant stage name in the table is not taken for rich markup (it would vanish)
    assert any("│ int8-static[te" in line for line in printed.splitlines()), printed
    assert "## int8 per runtime" in md and "| tensorrt | tensorrt |" in md and "proxy for TensorRT" in md
    html = (tmp_path / "o" / "report.html").read_text()
    assert 'id="plans"' in html and "int8-static[tensorrt]" in html



@pytest.mark.slow
def test_tflite_makes_its_own_int8_and_is_judged_in_its_runtime(tmp_path):
    """TFLite's converter quantizes from the float IR by itself: no int8-static variant stage is made for it,
    and its stage is judged on LiteRT's numbers under the int8 profile like the onnx one on onnxruntime's."""
    from models_zoo import ZOO

    build = ZOO["mlp"].build()
    x = build.example_inputs[next(iter(build.example_inputs))]
    rng = np.random.default_rng(5)
    calib = tuple({k: rng.normal(v.mean(), v.std() or 1.0, size=v.shape).astype(v.dtype)
                   for k, v in build.example_inputs.items()} for _ in range(8))
    result = convert("zoo:mlp", None, targets=["onnx", "tflite"], out_dir=tmp_path / "o",
                     quantize=QuantizeOptions("int8-static", calibration=calib, min_top1=0.0),
                     parity=ParityOptions(held_out_samples=2 * x.shape[0]))
    m = result.record
    assert [st.name for st in m.stages if st.name.startswith("int8-static")] == ["int8-static"]
    tfl = m.stage("tflite")
    assert tfl.error is None and tfl.parity.profile == "int8" and "litert" in (tfl.runtime or "")
    assert tfl.parity.batches == m.stage("onnx").parity.batches  # the same held-out samples judge both
    plans = {q.runtime: q for q in m.quantize_plans}
    assert plans["tflite"].stage == "tflite" and plans["tflite"].made_by.startswith("the tflite target")
    assert plans["onnxruntime-cpu"].stage == "int8-static"


@pytest.mark.parametrize("flags", [{"avx2"}, {"avx2", "avx512f", "avx512_vnni"}], ids=["avx2", "avx512-vnni"])
def test_the_variants_planned_for_either_x86_cpu(monkeypatch, flags):
    """The same targets get the same stages on an AVX2-only and an AVX-512 VNNI CPU; only the CPU plan's
    reduce_range follows the CPU, and TensorRT's plan never does."""
    from forgeml.passes.precision import cpu_features
    from forgeml.passes.precision.plan import int8_static_plan, plans_for, variant_runtimes

    monkeypatch.setattr(cpu_features, "detect", lambda: cpu_features.parse("x86_64", flags))
    assert variant_runtimes(("onnx", "tensorrt")) == ["tensorrt"] and variant_runtimes(("onnx",)) == []
    plans = {p.runtime: p for p in plans_for(("onnx", "tensorrt"))}
    assert plans["onnxruntime-cpu"].plan.reduce_range == ("avx512_vnni" not in flags)
    assert plans["onnxruntime-cpu"].plan.activation_type == "uint8"
    trt = int8_static_plan("tensorrt")
    assert plans["tensorrt"].plan == trt and (trt.activation_type, trt.reduce_range) == ("int8", False)
