"""simplify: onnxsim's constant folding, shape-op elimination and fusions (Conv+BN, …).

onnxsim's own random-input check is off (``check_n=0``): the pipeline checks parity against the
source model after every pass, which is the stronger test.
"""

from __future__ import annotations

from dataclasses import dataclass

from forgeml.errors import PassError, first_line, require
from forgeml.passes.base import ForgePass, PassResult, from_proto, to_proto


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
            first = first_line(e)
            raise PassError(f"simplify: onnxsim failed: {first}") from e
        return PassResult(from_proto(simplified), simplified.SerializeToString() != before)
