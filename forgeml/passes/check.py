"""check: the ONNX checker, then ONNX shape inference (strict by default), whose shapes are stored.

The checker runs with ``full_check=False`` (structure, types, opsets), since its full mode would only
run the same shape inference a second time; the shape inference done here is the one whose
strictness and data propagation the config controls and whose result the pass keeps.

Rewrites: adds ``value_info`` for every intermediate tensor whose shape/type ONNX can infer.
Fails (``PassError``) when the checker rejects the model, naming the checker's complaint.
Past protobuf's 2 GB limit both run on the graph with its weights held out (``passes.base.tool_proto``).
"""

from __future__ import annotations

from dataclasses import dataclass

from forgeml.errors import PassError, first_line
from forgeml.passes.base import ForgePass, PassResult, from_tool, tool_proto


@dataclass(frozen=True)
class CheckConfig:
    strict_shapes: bool = True  # shape inference errors fail the pass instead of being skipped
    data_prop: bool = True  # propagate constant shape values (Shape -> Gather -> Reshape chains)


class CheckPass(ForgePass):
    name = "check"
    Config = CheckConfig

    def call(self, model) -> PassResult:
        import onnx

        proto, held = tool_proto(model)  # a model past 2 GB: its weights held out (as inputs of their shape)
        try:
            onnx.checker.check_model(proto, full_check=False)
            inferred = onnx.shape_inference.infer_shapes(
                proto, check_type=True, strict_mode=self.config.strict_shapes, data_prop=self.config.data_prop)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
            raise PassError(f"check: the ONNX checker rejects the model: {first_line(e)}") from e
        modified = len(inferred.graph.value_info) != len(proto.graph.value_info)
        return PassResult(from_tool(inferred, held), modified)
