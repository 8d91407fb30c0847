"""validation/inputs.example_from_spec: the one rule for synthetic inputs, and its callers follow it."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from forgeml.pipeline.compare import synth_example
from forgeml.errors import PassError
from forgeml.ir import Signature, TensorSpec
from forgeml.passes.precision.base import synthetic_from_graph
from forgeml.parity.inputs import example_from_spec


def test_dims_mapping_and_integer_range():
    rng = np.random.default_rng(0)
    a = example_from_spec(TensorSpec("ids", (None, "t", 4), "int64"), rng, 8, dims={0: 2}, int_high=8)
    assert a.shape == (2, 8, 4) and a.dtype == np.int64 and 0 <= a.min() and a.max() < 8 and a.max() > 1
    b = example_from_spec(TensorSpec("x", (None, 3), "float16"), np.random.default_rng(0))
    assert b.shape == (2, 3) and b.dtype == np.float16


def test_compare_and_passes_draw_through_it():
    sig = Signature((TensorSpec("x", (None, "t"), "float32"), TensorSpec("m", (None, "t"), "bool")), ())
    got = synth_example(sig, seed=5)
    rng = np.random.default_rng(5)
    for t in sig.inputs:
        np.testing.assert_array_equal(got[t.name], example_from_spec(t, rng, 8, dims={0: 2}, int_high=8))
    vi = helper.make_tensor_value_info
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [vi("x", TensorProto.FLOAT, [3, 4])],
                          [vi("y", TensorProto.FLOAT, [3, 4])])
    sets = synthetic_from_graph(helper.make_model(g), 2, seed=1)
    rng = np.random.default_rng(1)
    for s in sets:
        np.testing.assert_array_equal(s["x"], example_from_spec(TensorSpec("x", (3, 4), "float32"), rng))
    g.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"  # stricter on purpose: no guessed sizes
    with pytest.raises(PassError, match="cannot be made up"):
        synthetic_from_graph(helper.make_model(g), 1, seed=0)
