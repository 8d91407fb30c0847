"""tf2onnx's output made deterministic: its generated names renumbered by first use (no TensorFlow needed),
and the same Keras model converted twice in one process giving the same bytes (its name counter and
node order used to make the second conversion differ)."""

from __future__ import annotations

import hashlib

import pytest
from onnx import TensorProto, helper

from forgeml.converters.tf2onnx_order import renumber


def _graph(fold_a: str, fold_b: str, squeeze: str):
    """What tf2onnx leaves: two folded constants and a made Squeeze, numbered by a counter that has run on."""
    nodes = [helper.make_node("Add", ["x", fold_a], ["conv/BiasAdd:0"], name="conv/BiasAdd"),
             helper.make_node("Mul", ["conv/BiasAdd:0", fold_b], [f"pool/Mean_{squeeze}:0"], name=squeeze),
             helper.make_node("Relu", [f"pool/Mean_{squeeze}:0"], ["y"], name="relu")]
    inits = [helper.make_tensor(fold_b, TensorProto.FLOAT, [1], [2.0]),
             helper.make_tensor(fold_a, TensorProto.FLOAT, [1], [1.0])]
    vi = [helper.make_tensor_value_info(f"pool/Mean_{squeeze}:0", TensorProto.FLOAT, [1])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], inits, value_info=vi)
    return helper.make_model(g)


def test_renumber_depends_on_first_use_not_on_the_counter():
    early, late = _graph("const_fold_opt__27", "const_fold_opt__29", "Squeeze__31"), \
        _graph("const_fold_opt__145", "const_fold_opt__144", "Squeeze__146")
    assert early.SerializeToString() != late.SerializeToString()
    renumber(early)
    renumber(late)
    assert early.SerializeToString() == late.SerializeToString()
    g = early.graph
    # numbered as the walk meets them: node 0's input, node 1's name (and its output), node 1's input
    assert [n.input[1] for n in g.node[:2]] == ["const_fold_opt__1", "const_fold_opt__3"]
    assert g.node[1].name == "Squeeze__2" and g.node[1].output[0] == "pool/Mean_Squeeze__2:0"
    assert g.value_info[0].name == "pool/Mean_Squeeze__2:0"
    assert [t.name for t in g.initializer] == ["const_fold_opt__3", "const_fold_opt__1"]
    assert [v.name for v in g.input] == ["x"] and [v.name for v in g.output] == ["y"]


def test_renumber_leaves_a_graph_whose_new_names_would_collide():
    m = _graph("a__5", "b__7", "Squeeze__9")
    m.graph.input[0].name = m.graph.node[0].input[0] = "a__1"  # a model input keeps its name; "a__5" would take it
    before = m.SerializeToString()
    renumber(m)
    assert m.SerializeToString() == before


@pytest.mark.slow
def test_the_same_keras_model_twice_in_one_process_gives_the_same_bytes():
    pytest.importorskip("tf2onnx")
    from forgeml.converters.base import ImportOptions
    from forgeml.converters.tensorflow import TensorflowConverter
    from models_zoo import ZOO

    built = ZOO["keras_cnn"].build()
    digests = set()
    for _ in range(2):
        ir = TensorflowConverter().convert(built.model, built.example_inputs, "zoo:keras_cnn", ImportOptions()).ir
        digests.add(hashlib.sha256(ir.to_proto().SerializeToString()).hexdigest())
    assert len(digests) == 1
