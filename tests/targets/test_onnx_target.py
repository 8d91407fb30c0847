"""The onnx target's bytes do not depend on the order passes added opset domains in."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from forgeml.ir import IRModel, Provenance, signature_of
from forgeml.targets import TARGETS
from forgeml.targets.base import TargetContext


def _ir(domains: list[tuple[str, int]]) -> IRModel:
    import onnx_ir

    vi = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [vi("x", TensorProto.FLOAT, [2])],
                              [vi("y", TensorProto.FLOAT, [2])])
    model = onnx_ir.serde.deserialize_model(
        helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in domains]))
    return IRModel(model, signature_of(model), Provenance("onnx", "test", "", "onnx"))


def test_opset_imports_are_written_in_domain_order(tmp_path):
    domains = [("", 17), ("ai.onnx.ml", 3), ("com.microsoft", 1)]
    written = []
    for i, order in enumerate([domains, domains[::-1]]):
        out = tmp_path / str(i)
        out.mkdir()
        art = TARGETS["onnx"].build(_ir(order), out, TargetContext(forgeml_version="test"))
        written.append(art.path.read_bytes())
    assert written[0] == written[1]
    assert [(o.domain, o.version) for o in onnx.load_from_string(written[0]).opset_import] == domains
