"""int8 dynamic, int8 static and int4 on tiny hand-built graphs: real onnxruntime numbers before/after."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from tests.passes.conftest import bound_inputs, cosine, mlp_proto, run_proto

from forgeml.errors import PassError
from forgeml.passes import from_proto, to_proto
from forgeml.passes.precision.quantize import Int4Pass, Int8DynamicPass, Int8StaticPass


def _ops(model) -> Counter:
    return Counter(n.op_type for n in to_proto(model).graph.node)


def test_int8_dynamic_quantizes_matmuls_and_gemm(x_batch):
    proto = mlp_proto(gemm=True)
    p = Int8DynamicPass().bind(bound_inputs(proto))
    result = p(from_proto(proto))
    ops = _ops(result.model)
    assert result.modified
    assert ops["MatMulInteger"] == 3 and ops["Gemm"] == 0 and ops["MatMul"] == 0  # the Gemm was rewritten too
    want, got = run_proto(proto, x_batch), run_proto(to_proto(result.model), x_batch)
    assert cosine(want, got) > 0.999
    assert np.abs(want - got).max() < 0.1 * np.abs(want).max()
    assert result.details["kept_in_float"] == [] and result.details["steps"][0]["passed"]
    assert result.details["settings"]["per_channel"] is True and "cpu" in result.details["settings"]
    assert p.output_precision("fp32") == "int8"


def test_int8_static_calibrates_qdq(x_batch):
    proto = mlp_proto()
    p = Int8StaticPass().bind(bound_inputs(proto, calibration=8))
    result = p(from_proto(proto))
    ops = _ops(result.model)
    assert ops["QuantizeLinear"] >= 3 and ops["DequantizeLinear"] >= 6 and ops["MatMul"] == 3
    assert cosine(run_proto(proto, x_batch), run_proto(to_proto(result.model), x_batch)) > 0.999
    assert result.details["settings"]["format"] == "QDQ"
    assert "warnings" not in result.details


def test_int8_static_refuses_without_calibration():
    proto = mlp_proto()
    with pytest.raises(PassError, match="needs calibration data.*`quantize.calibration`"):
        Int8StaticPass().bind(bound_inputs(proto, calibration=0))(from_proto(proto))


def test_int8_static_synthetic_calibration_is_flagged():
    proto = mlp_proto()
    p = Int8StaticPass(calibration="synthetic").bind(bound_inputs(proto))
    result = p(from_proto(proto))
    assert any("NOT representative" in w for w in result.details["warnings"])


def test_int4_makes_matmulnbits(x_batch):
    proto = mlp_proto(gemm=True)
    result = Int4Pass().bind(bound_inputs(proto))(from_proto(proto))
    ops = _ops(result.model)
    assert ops["MatMulNBits"] + ops["MatMul"] == 3 and ops["MatMulNBits"] >= 1
    assert cosine(run_proto(proto, x_batch), run_proto(to_proto(result.model), x_batch)) > 0.98
    assert result.details["settings"]["bits"] == 4


def test_int4_without_eligible_matmul_is_an_error():
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(PassError, match="no MatMul with a constant 2-D float weight"):
        Int4Pass()(from_proto(proto))


def test_prepare_rewrites_gemm_only_where_the_config_asks(x_batch):
    from forgeml.passes.precision.fp16 import Fp16Pass
    from forgeml.passes.precision.quantize import Int4Config, Int8DynamicConfig

    proto = mlp_proto(gemm=True)
    ref = run_proto(proto, x_batch)

    def ops(p):
        return Counter(n.op_type for n in p.graph.node)

    for pass_ in (Int8DynamicPass(), Int4Pass()):
        out = pass_.prepare(proto)
        assert ops(out)["Gemm"] == 0 and all(n.name for n in out.graph.node)
        np.testing.assert_allclose(run_proto(out, x_batch), ref, rtol=1e-5, atol=1e-5)
    for pass_ in (Int8DynamicPass(Int8DynamicConfig(gemm_to_matmul=False)), Int4Pass(Int4Config(gemm_to_matmul=False)),
                  Fp16Pass(), Int8StaticPass()):
        assert ops(pass_.prepare(proto))["Gemm"] == ops(proto)["Gemm"] > 0
