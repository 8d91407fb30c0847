"""Gemm → MatMul + Add and node naming: same numbers from onnxruntime before and after."""

from __future__ import annotations

import numpy as np
from tests.passes.conftest import mlp_proto, run_proto

from forgeml.passes.graph_tools import gemm_to_matmul, named, weight_nodes


def test_gemm_to_matmul_keeps_the_numbers(x_batch):
    proto = mlp_proto(gemm=True)
    out, n = gemm_to_matmul(proto)
    assert n == 1
    assert [x.op_type for x in out.graph.node].count("Gemm") == 0
    assert "w1t" not in {t.name for t in out.graph.initializer}  # the transposed original is gone
    np.testing.assert_allclose(run_proto(out, x_batch), run_proto(proto, x_batch), rtol=1e-5, atol=1e-5)
    assert [x.op_type for x in proto.graph.node].count("Gemm") == 1  # the input is left alone


def test_named_and_weight_nodes():
    proto = mlp_proto()
    for node in proto.graph.node:
        node.name = ""
    out = named(proto)
    names = [n.name for n in out.graph.node]
    assert all(names) and len(set(names)) == len(names)
    assert len(weight_nodes(out, ["MatMul"])) == 3
