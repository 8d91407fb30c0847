"""The precision budget judges centered cosine (the input-dependent error) and is checked again on held-out
inputs; real onnxruntime numbers, properties that hold on every CPU."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tests.passes.conftest import bound_inputs, mlp_proto

from forgeml.passes import from_proto
from forgeml.passes.precision.base import BudgetConfig
from forgeml.passes.precision.quantize import Int8DynamicPass
from forgeml.report.gating import warnings


def _offset_proto() -> onnx.ModelProto:
    """x + 1000 -> MatMul (fc_offset) -> minus the offset's product -> Relu -> MatMul (fc_out). The offset swamps
    fc_offset's activation range: quantized, its input-dependent part drowns (only fc_offset is to blame)."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(16, 32)).astype(np.float32) / 4
    inits = [numpy_helper.from_array(np.full(16, 1000, np.float32), "offset"),
             numpy_helper.from_array(w1, "w1"),
             numpy_helper.from_array((1000 * w1.astype(np.float64).sum(0)).astype(np.float32), "unshift"),
             numpy_helper.from_array(rng.normal(size=(32, 8)).astype(np.float32) / 6, "w2"),
             numpy_helper.from_array(np.linspace(100, 200, 8, dtype=np.float32), "bias")]
    nodes = [helper.make_node("Add", ["x", "offset"], ["shifted"], name="shift"),
             helper.make_node("MatMul", ["shifted", "w1"], ["h0"], name="fc_offset"),
             helper.make_node("Sub", ["h0", "unshift"], ["h"], name="unshift"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["z"], name="fc_out"),
             helper.make_node("Add", ["z", "bias"], ["logits"], name="bias")]
    graph = helper.make_graph(nodes, "offset", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _run(proto, **budget):
    return Int8DynamicPass(budget=BudgetConfig(**budget)).bind(bound_inputs(proto))(from_proto(proto))


def test_centered_cosine_sees_what_plain_cosine_cannot():
    proto = _offset_proto()
    blind = _run(proto, min_centered_cosine=0.0, min_top1=0.0)  # plain cosine only
    assert blind.details["kept_in_float"] == []
    held = blind.details["held_out"]
    assert held["cosine"] >= 0.99 and held["centered_cosine"] < 0.95
    # the int8 budget's centered cosine sees it, and the fallback (ranking by the error on what varies)
    # keeps the node that drowned it in float
    seeing = _run(proto, min_top1=0.0)
    assert seeing.details["kept_in_float"] == ["fc_offset"]
    assert seeing.details["held_out"]["passed"] and seeing.details["held_out"]["centered_cosine"] >= 0.95


def test_held_out_verdict_is_computed_on_the_metrics_it_records():
    result = _run(mlp_proto())
    held, budget = result.details["held_out"], result.details["budget"]
    assert held["batches"] >= 4
    assert "centered_cosine" in held and "cosine" in held
    expected = held["cosine"] >= budget["min_cosine"] and held["centered_cosine"] >= budget["min_centered_cosine"]
    if "top1" in held:
        expected = expected and held["top1"] >= budget["min_top1"]
    assert held["passed"] == expected


def test_a_held_out_miss_is_a_gating_warning():
    manifest = {"source": {}, "stages": [{"name": "int8-dynamic", "kind": "pass", "details": {
        "held_out": {"batches": 4, "passed": False, "problem": "centered cosine 0.8 < 0.95"}}}]}
    assert any("held-out" in w and "centered cosine 0.8" in w for w in warnings(manifest))
