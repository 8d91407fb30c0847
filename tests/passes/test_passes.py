"""Passes on tiny hand-written graphs: what they rewrite, and onnxruntime numbers before/after."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import onnx_ir
import pytest

from forgeml.errors import InputError, PassError
from forgeml.ir import count_nodes
from forgeml.passes import PASSES, make_pass
from forgeml.passes.check import CheckPass
from forgeml.passes.cleanup import CleanupPass
from forgeml.passes.simplify import SimplifyPass
from forgeml.runtime.ort import ort_runner

DEAD_AND_DUPLICATES = """
<ir_version: 8, opset_import: ["" : 17]>
agraph (float[2, 3] x) => (float[2, 3] y)
<float[3] w1 = {1.0, 2.0, 3.0}, float[3] w2 = {1.0, 2.0, 3.0}, float[3] unused = {9.0, 9.0, 9.0}>
{
    a = Mul(x, w1)
    b = Mul(x, w2)
    dead = Relu(a)
    y = Add(a, b)
}
"""

CONSTANT_CHAIN = """
<ir_version: 8, opset_import: ["" : 17]>
agraph (float[2, 3] x) => (float[2, 3] y)
<float[3] c = {1.0, 2.0, 3.0}>
{
    two = Constant<value = float {2.0}>()
    c2 = Mul(c, two)
    c3 = Add(c2, two)
    y = Add(x, c3)
}
"""


def _model(text: str) -> onnx_ir.Model:
    return onnx_ir.serde.deserialize_model(onnx.parser.parse_model(text))


def _run(model: onnx_ir.Model, x: np.ndarray) -> np.ndarray:
    return ort_runner(onnx_ir.serde.serialize_model(model).SerializeToString(), optimize=False)({"x": x})["y"]


X = np.arange(6, dtype=np.float32).reshape(2, 3)


def test_registry_names_and_unknown_pass():
    assert {"check", "simplify", "cleanup"} <= set(PASSES)
    with pytest.raises(InputError, match="unknown pass 'nope'"):
        make_pass("nope")


def test_cleanup_removes_dead_nodes_unused_and_duplicate_initializers():
    model = _model(DEAD_AND_DUPLICATES)
    before = _run(model, X)
    result = CleanupPass()(model)
    assert result.modified and result.model is not model
    ops = [n.op_type for n in result.model.graph]
    assert ops == ["Mul", "Mul", "Add"]
    assert sorted(result.model.graph.initializers) == ["w1"]
    np.testing.assert_array_equal(_run(result.model, X), before)
    # Pure: the input model is untouched.
    assert count_nodes(model) == 4 and len(model.graph.initializers) == 3


def test_cleanup_reports_unmodified_on_a_clean_graph():
    model = CleanupPass()(_model(DEAD_AND_DUPLICATES)).model
    assert not CleanupPass()(model).modified


def test_cleanup_with_cse_merges_identical_nodes():
    model = CleanupPass(cse=True)(_model(DEAD_AND_DUPLICATES)).model
    assert [n.op_type for n in model.graph] == ["Mul", "Add"]
    np.testing.assert_array_equal(_run(model, X), X * np.array([1, 2, 3]) * 2)


def test_simplify_folds_constants():
    model = _model(CONSTANT_CHAIN)
    result = SimplifyPass()(model)
    assert result.modified
    # The Mul/Add chain on constants is computed at compile time; only the Add on x is left to run.
    assert [n.op_type for n in result.model.graph if n.op_type != "Constant"] == ["Add"]
    np.testing.assert_allclose(_run(result.model, X), X + np.array([4.0, 6.0, 8.0]))


def test_simplify_keeps_constants_when_told():
    result = SimplifyPass(fold_constants=False, optimize=False)(_model(CONSTANT_CHAIN))
    assert len([n for n in result.model.graph]) >= 3


def test_check_adds_inferred_shapes():
    result = CheckPass()(_model(CONSTANT_CHAIN))
    assert result.modified
    inferred = {v.name: v for n in result.model.graph for v in n.outputs}
    assert list(inferred["c3"].shape) == [3]


def test_check_names_what_the_checker_rejects():
    bad = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[2, 3] x) => (float[2, 3] y)
    { y = Add(x, missing) }
    """)
    with pytest.raises(PassError, match="check: the ONNX checker rejects the model.*missing"):
        CheckPass()(onnx_ir.serde.deserialize_model(bad))


def test_pass_config_is_typed():
    with pytest.raises(TypeError):
        CleanupPass(no_such_option=True)
    assert CleanupPass(cse=True).config_json()["cse"] is True


def test_cleanup_alone_runs_on_a_dynamo_export(tmp_path):
    """The dynamo exporter hands over transposed weights as strided views; the pipeline makes them
    contiguous, so onnx_ir's deduplication (which needs contiguous arrays) works without a check first."""
    import forgeml

    result = forgeml.convert("zoo:transformer", targets=["onnx"], passes=["cleanup"], out_dir=tmp_path / "o")
    assert result.ok
    for value in result.ir.model.graph.initializers.values():
        assert value.const_value.numpy().flags.c_contiguous
