"""Tiny hand-built graphs for the precision-pass tests (built with onnx.helper, run with onnxruntime)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def mlp_proto(*, outlier: float = 1.0, gemm: bool = False, seed: int = 0, features: int = 16,
              hidden: int = 64, classes: int = 8) -> onnx.ModelProto:
    """x[N,16] → MatMul/Gemm → Relu → MatMul → Relu → MatMul → logits[N,8].

    ``outlier`` scales one hidden unit of the first layer: the second layer's input then has one huge
    channel, which makes its per-tensor activation scale coarse (a layer int8 hurts the most).
    """
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.5, (features, hidden)).astype(np.float32)
    w1[:, 0] *= outlier
    b1 = rng.normal(0, 0.1, hidden).astype(np.float32)
    w2 = rng.normal(0, 0.3, (hidden, hidden)).astype(np.float32)
    w2[0, :] /= outlier  # keep the function's scale: the outlier channel's weights shrink
    w3 = rng.normal(0, 0.5, (hidden, classes)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w2, "w2"), (w3, "w3"), (b1, "b1"))]
    if gemm:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(w1.T), "w1t"))
        first = [helper.make_node("Gemm", ["x", "w1t", "b1"], ["h1"], name="fc1", transB=1)]
    else:
        inits.append(numpy_helper.from_array(w1, "w1"))
        first = [helper.make_node("MatMul", ["x", "w1"], ["m1"], name="fc1"),
                 helper.make_node("Add", ["m1", "b1"], ["h1"], name="bias1")]
    nodes = first + [
        helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
        helper.make_node("MatMul", ["r1", "w2"], ["h2"], name="fc2"),
        helper.make_node("Relu", ["h2"], ["r2"], name="relu2"),
        helper.make_node("MatMul", ["r2", "w3"], ["logits"], name="fc3"),
    ]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", features])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def run_proto(proto, feeds: dict, *, exact: bool = False) -> np.ndarray:
    """``exact``: onnxruntime's graph rewrites off, so Q/DQ is computed as written (no fused int8 kernels)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if exact:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)[0]


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def bound_inputs(proto, n: int = 32, calibration: int = 0, seed: int = 0):
    """PassInputs for a graph with one float input x[N,16] (batch 8)."""
    from forgeml.ir import signature_of
    from forgeml.passes import PassInputs, from_proto

    rng = np.random.default_rng(seed)
    example = {"x": rng.normal(size=(8, 16)).astype(np.float32)}
    calib = tuple({"x": rng.normal(size=(8, 16)).astype(np.float32)} for _ in range(calibration))
    return PassInputs(example, signature_of(from_proto(proto)), calib, seed)


@pytest.fixture
def x_batch():
    return {"x": np.random.default_rng(123).normal(size=(64, 16)).astype(np.float32)}
