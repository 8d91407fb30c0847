"""cleanup: remove dead nodes, unused initializers/functions/opsets, and merge duplicate constants.

Rewrites (all from ``onnx_ir.passes.common``, run to a fixed point):
- nodes whose outputs nothing reads, and initializers nothing reads;
- functions and opset imports nothing uses;
- initializers with identical dtype, shape and bytes, merged into one;
- (optional) common subexpressions: identical nodes on identical inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from onnx_ir.passes import PassManager
from onnx_ir.passes import common as common_passes

from forgeml.passes.base import ForgePass, PassResult


@dataclass(frozen=True)
class CleanupConfig:
    dedupe_initializers: bool = True
    dedupe_size_limit: int = 1 << 32  # bytes; larger initializers are left alone
    cse: bool = False  # common subexpression elimination
    max_rounds: int = 3


class CleanupPass(ForgePass):
    name = "cleanup"
    Config = CleanupConfig

    def call(self, model) -> PassResult:
        passes = []
        if self.config.dedupe_initializers:
            passes.append(common_passes.DeduplicateHashedInitializersPass(size_limit=self.config.dedupe_size_limit))
        if self.config.cse:
            passes.append(common_passes.CommonSubexpressionEliminationPass())
        passes += [
            common_passes.RemoveUnusedNodesPass(),
            common_passes.RemoveUnusedFunctionsPass(),
            common_passes.RemoveUnusedOpsetsPass(),
        ]
        result = PassManager(passes, steps=self.config.max_rounds, early_stop=True)(model.clone())
        return PassResult(result.model, result.modified)
