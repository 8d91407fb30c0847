"""simplify: onnxsim's constant folding, shape-op elimination and fusions (Conv+BN, …).

onnxsim's own random-input check is off (``check_n=0``): the pipeline checks parity against the
source model after every pass, which is the stronger test.

Where onnxsim itself fails on a valid model (it loses outer-scope names in some ``If`` subgraphs, for
one), the pass leaves the model as it was and says so in a warning: an optimizer's bug is no reason
to refuse a conversion whose model onnxruntime runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from forgeml.errors import first_line, require
from forgeml.passes.base import DetailedPassResult, ForgePass, PassResult, from_proto, to_proto


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
        proto = to_proto(model)
        before = proto.SerializeToString()
        try:
            simplified, _ = onnxsim.simplify(
                proto, check_n=0, perform_optimization=self.config.optimize,
                skip_fuse_bn=not self.config.fuse_bn,
                skip_constant_folding=not self.config.fold_constants,
            )
        except Exception as e:  # onnxsim raises RuntimeError/ValueError/… from C++
            why = f"simplify: onnxsim failed ({first_line(e)[:200]}); the model goes on unsimplified"
            return DetailedPassResult(from_proto(proto), False, details={"skipped": why, "warnings": [why]})
        return PassResult(from_proto(simplified), simplified.SerializeToString() != before)
