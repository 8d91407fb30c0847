"""fp16: float16 weights and compute, float32 model inputs/outputs, judged against the float model."""

from __future__ import annotations

import numpy as np
import onnx
from tests.passes.conftest import bound_inputs, cosine, mlp_proto, run_proto

from forgeml.passes import from_proto, to_proto
from forgeml.passes.precision.fp16 import Fp16Pass


def test_fp16_halves_weights_and_keeps_io_float32(x_batch):
    proto = mlp_proto()
    result = Fp16Pass().bind(bound_inputs(proto))(from_proto(proto))
    out = to_proto(result.model)
    assert {t.data_type for t in out.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert out.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert out.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert out.ByteSize() < 0.6 * proto.ByteSize()
    want, got = run_proto(proto, x_batch), run_proto(out, x_batch)
    assert got.dtype == np.float32 and cosine(want, got) > 0.9999
    assert result.details["steps"][0]["passed"]
    assert Fp16Pass().output_precision("fp32") == "fp16"
