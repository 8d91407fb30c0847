"""converters/_common.py: the shared ModelProto -> IR step refuses renamed inputs or outputs."""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper

from forgeml.converters._common import ir_from_proto
from forgeml.errors import ConversionError
from forgeml.ir import Provenance


def _proto():
    vi = helper.make_tensor_value_info
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [vi("x", TensorProto.FLOAT, [2])],
                          [vi("y", TensorProto.FLOAT, [2])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_names_must_match_the_source():
    prov = Provenance("sklearn", "ref", "0" * 64, "fw", "route")
    ir = ir_from_proto(_proto(), ["x"], ["y"], prov, "sklearn->onnx")
    assert ir.signature.input_names == ["x"] and ir.provenance is prov
    with pytest.raises(ConversionError, match=r"^tensorflow->onnx: .*\['y'\] do not match .*\['out'\]"):
        ir_from_proto(_proto(), ["x"], ["out"], prov, "tensorflow->onnx")


def test_opset_import_order_does_not_change_the_bytes():
    """skl2onnx lists opset imports in set (hash-seed) order; the IR's bytes must not follow it."""
    prov = Provenance("sklearn", "ref", "0" * 64, "fw", "route")
    blobs = set()
    for order in (["", "ai.onnx.ml"], ["ai.onnx.ml", ""]):
        proto = _proto()
        del proto.opset_import[:]
        proto.opset_import.extend(helper.make_opsetid(d, 17 if d == "" else 3) for d in order)
        ir = ir_from_proto(proto, ["x"], ["y"], prov, "sklearn->onnx")
        blobs.add(ir.to_proto().SerializeToString())
    assert len(blobs) == 1
