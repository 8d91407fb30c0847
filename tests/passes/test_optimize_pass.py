"""optimize: onnxruntime's transformer fusions fire where the pattern exists and the manifest says which."""

from __future__ import annotations

import numpy as np
import onnx
from tests.passes.conftest import run_proto
from onnx import TensorProto, helper, numpy_helper

from forgeml.passes import from_proto, to_proto
from forgeml.passes.optimize import OptimizePass


def _residual_layernorm() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    d = 32
    inits = [numpy_helper.from_array(rng.normal(1, 0.2, d).astype(np.float32), "g"),
             numpy_helper.from_array(rng.normal(0, 0.2, d).astype(np.float32), "b"),
             numpy_helper.from_array(rng.normal(0, 0.2, (d, d)).astype(np.float32), "w")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "x"], ["s"], name="residual"),
             helper.make_node("LayerNormalization", ["s", "g", "b"], ["y"], name="ln", axis=-1, epsilon=1e-5)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, d])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, d])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_skip_layernorm_fuses_and_is_recorded():
    proto = _residual_layernorm()
    result = OptimizePass()(from_proto(proto))
    out = to_proto(result.model)
    assert result.modified
    assert result.details["fusions"] == {"SkipLayerNormalization": 1}
    assert [n.op_type for n in out.graph.node].count("SkipLayerNormalization") == 1
    x = {"x": np.random.default_rng(1).normal(size=(2, 8, 32)).astype(np.float32)}
    np.testing.assert_allclose(run_proto(out, x), run_proto(proto, x), rtol=1e-4, atol=1e-4)


def test_no_pattern_no_fusion():
    from tests.passes.conftest import mlp_proto

    result = OptimizePass()(from_proto(mlp_proto()))
    assert result.details["fusions"] == {}
