"""simplify: onnxsim's constant folding, shape-op elimination and fusions (Conv+BN, …).

onnxsim's own random-input check is off (``check_n=0``): the pipeline checks parity against the
source model after every pass, which is the stronger test. Past protobuf's 2 GB limit onnxsim sees the
graph with the weights held out as inputs (``passes.base.tool_proto``): what needs weight values is
skipped, and the manifest's details say so.

Where onnxsim itself fails on a valid model (it loses outer-scope names in some ``If`` subgraphs, for
one), the pass leaves the model as it was and says so in a warning: an optimizer's bug is no reason
to refuse a conversion whose model onnxruntime runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from forgeml.errors import first_line, require
from forgeml.passes.base import DetailedPassResult, ForgePass, PassResult, from_tool, tool_proto


@dataclass(frozen=True)
class SimplifyConfig:
    fold_constants: bool = True
    fuse_bn: bool = True  # fold BatchNormalization into the preceding Conv
    optimize: bool = True  # onnxoptimizer's fusions inside onnxsim


class SimplifyPass(ForgePass):
    name = "simplify"
    Config = SimplifyConfig

    def call(self, model) -> PassResult:
        onnxsim = require("onnxsim", "all")
        proto, held = tool_proto(model)  # past 2 GB: the weights are graph inputs onnxsim cannot fold or fuse
        before = proto.SerializeToString()
        try:
            simplified, _ = onnxsim.simplify(
                proto, check_n=0, perform_optimization=self.config.optimize,
                skip_fuse_bn=not self.config.fuse_bn,
                skip_constant_folding=not self.config.fold_constants,
            )
        except Exception as e:  # onnxsim raises RuntimeError/ValueError/… from C++
            why = f"simplify: onnxsim failed ({first_line(e)[:200]}); the model goes on unsimplified"
            return DetailedPassResult(from_tool(proto, held), False, details={"skipped": why, "warnings": [why]})
        modified = simplified.SerializeToString() != before
        if not held:
            return PassResult(from_tool(simplified, held), modified)
        gib = sum(t.nbytes for t in held.values()) / 2**30
        note = (f"simplify: {len(held)} weights ({gib:.2f} GiB) were held out of onnxsim (the model is past "
                "protobuf's 2 GB limit): folding and fusions that need weight values (Conv+BatchNorm, constant "
                "subgraphs of weights) were skipped")
        return DetailedPassResult(from_tool(simplified, held), modified, {"weights_held_out": len(held), "note": note})
