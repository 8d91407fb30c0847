"""The tflite target's ONNX rewrites and layout helpers, without TensorFlow: each rewrite must give the
same numbers in onnxruntime as the graph it replaced, and touch nothing it does not need to.
(The rewrites' effect through onnx2tf and the TFLite interpreter is in test_tflite_second_tries.py.)"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from forgeml.runtime.ort import ort_runner
from forgeml.targets.tflite.onnx2tf import _layouts, channels_last
from forgeml.targets.tflite.rewrites import equal_broadcast_ranks, rewrite

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, inits=(), opset=18):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                          [helper.make_value_info(n, helper.make_tensor_type_proto(TensorProto.FLOAT, None)) for n in outputs],
                          list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.shape_inference.infer_shapes(m, strict_mode=True)
    return m


def _feeds(m):
    return {i.name: RNG.normal(size=[d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
            for i in m.graph.input}


def _same_numbers(a, b):
    feeds = _feeds(a)
    ra, rb = ort_runner(a.SerializeToString())(feeds), ort_runner(b.SerializeToString())(feeds)
    assert ra.keys() == rb.keys()
    for k in ra:
        assert ra[k].shape == rb[k].shape and np.array_equal(ra[k], rb[k]), k


def _ranks_of_inputs(m, op):
    inferred = onnx.shape_inference.infer_shapes(m)
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in (*inferred.graph.input, *inferred.graph.value_info)}
    rank.update({t.name: len(t.dims) for t in m.graph.initializer})
    return [[rank[i] for i in n.input] for n in m.graph.node if n.op_type == op]


@pytest.mark.parametrize("opset", [11, 18])
def test_broadcast_operands_get_the_output_rank(opset):
    """A rank-3 constant (shared by two ops), a rank-3 input and a rank-4 constant against rank-4/5
    activations: every operand ends at the op's rank, the numbers are bit-identical."""
    shared = numpy_helper.from_array(RNG.normal(size=(3, 4, 5)).astype(np.float32), "bias")
    own = numpy_helper.from_array(RNG.normal(size=(2, 1, 4, 1)).astype(np.float32), "scale")
    nodes = [helper.make_node("Add", ["x", "bias"], ["a"]),
             helper.make_node("Mul", ["bias", "a"], ["b"]),
             helper.make_node("Sub", ["b", "m"], ["c"]),
             helper.make_node("Div", ["v", "scale"], ["d"]),
             helper.make_node("Add", ["c", "c"], ["e"])]  # equal ranks: left alone
    m = _model(nodes, [("x", [1, 3, 4, 5]), ("m", [3, 4, 5]), ("v", [1, 2, 3, 4, 5])], ["e", "d"],
               [shared, own], opset=opset)
    out, done = rewrite(m)
    assert done == {"equal-broadcast-ranks": 4}
    onnx.shape_inference.infer_shapes(out, strict_mode=True)
    for op, want in (("Add", [[4, 4], [4, 4]]), ("Mul", [[4, 4]]), ("Sub", [[4, 4]]), ("Div", [[5, 5]])):
        assert _ranks_of_inputs(out, op) == want, op
    assert [n.op_type for n in out.graph.node].count("Unsqueeze") == 1  # only the non-constant operand
    assert "bias" in {t.name for t in out.graph.initializer}  # shared: the other user keeps its own
    _same_numbers(m, out)
    assert len(m.graph.node) == 5  # rewrite() works on a copy


def test_nothing_to_rewrite_leaves_the_graph_alone():
    """Scalars and operands of rank < 3 graphs are what onnx2tf handles: no change, not even a copy's bytes."""
    nodes = [helper.make_node("Add", ["x", "s"], ["a"]), helper.make_node("Mul", ["a", "w"], ["y"])]
    m = _model(nodes, [("x", [2, 3, 4]), ("w", [4])], ["y"][:1],
               [numpy_helper.from_array(np.array(2.0, np.float32), "s")])
    flat = _model([helper.make_node("Add", ["x", "w"], ["y"])], [("x", [3, 4]), ("w", [4])], ["y"])
    assert equal_broadcast_ranks(flat) == 0
    out, done = rewrite(m)
    assert done == {"equal-broadcast-ranks": 1}  # w: rank 1 against rank 3
    out2, done2 = rewrite(out)
    assert done2 == {} and out2.SerializeToString() == out.SerializeToString()
    _same_numbers(m, out)


def test_layouts_lists_every_permutation_that_fits():
    assert _layouts((1, 3, 4, 5), (1, 3, 4, 5))[0] is None
    assert _layouts((1, 3, 4, 5), (1, 4, 5, 3)) == [channels_last(4)]
    assert _layouts((3, 4, 5), (4, 5, 3)) == [(1, 2, 0)]  # neither same nor channel-last
    assert _layouts((1, 8, 8), (1, 8, 8)) == [None, (0, 2, 1)]  # the batch axis cannot move
    cube = _layouts((4, 4, 4), (4, 4, 4))
    assert cube[:2] == [None, (0, 2, 1)] and len(cube) == 6
    assert _layouts((2, 3), (3, 3)) == []


def test_negative_dims_become_named_and_node_names_scope_safe():
    """paddle2onnx writes ``-1`` for unknown dims and names nodes ``Softmax@0``: both made acceptable
    to TensorFlow, numbers and tensor names unchanged."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="Relu@0"),
             helper.make_node("Softmax", ["r"], ["y"], name="Softmax@0", axis=-1),
             helper.make_node("Neg", ["y"], ["z"], name="Softmax_0")]  # the sanitized name is taken
    m = _model(nodes, [("x", [2, 5])], ["z"])
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = -1
    out, done = rewrite(m)
    assert done == {"symbolic-negative-dims": 1, "scope-safe-node-names": 2}
    dim = out.graph.input[0].type.tensor_type.shape.dim[0]
    assert not dim.HasField("dim_value") and dim.dim_param == "x_dim0"
    assert [n.name for n in out.graph.node] == ["Relu_0", "Softmax_0_2", "Softmax_0"]
    assert [list(n.output) for n in out.graph.node] == [["r"], ["y"], ["z"]]
    feeds = {"x": RNG.normal(size=(3, 5)).astype(np.float32)}  # any batch: the dim is free
    got = ort_runner(out.SerializeToString())(feeds)["z"]
    e = np.exp(np.maximum(feeds["x"], 0))
    assert np.allclose(got, -e / e.sum(-1, keepdims=True), atol=1e-6)
