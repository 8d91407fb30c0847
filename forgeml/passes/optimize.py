"""optimize: onnxruntime's offline graph optimizations and its transformer fusions.

Runs ``onnxruntime.transformers.optimizer.optimize_model``: onnxruntime's basic optimizations
(constant folding, redundant node removal) and then the Python fusions — Attention, LayerNormalization,
SkipLayerNormalization, Gelu/FastGelu/BiasGelu, EmbedLayerNormalization — wherever the graph has their
pattern. The manifest records which fusions fired (fused op → count) and the op counts that changed.

Fused ops live in the ``com.microsoft`` domain: the result runs in onnxruntime, not in every ONNX
runtime. On models with none of the patterns (CNNs) only the basic optimizations apply.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from forgeml.errors import PassError
from forgeml.passes.base import DetailedPassResult, ForgePass, from_proto, to_proto

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimizeConfig:
    model_type: str = "bert"  # the fusion family: bert covers encoder blocks (attention, layernorm, gelu)
    opt_level: int = 1  # onnxruntime level before the fusions: 0 none, 1 basic (portable), 2 extended
    num_heads: int = 0  # 0: detect from the graph
    hidden_size: int = 0  # 0: detect from the graph


class OptimizePass(ForgePass):
    name = "optimize"
    Config = OptimizeConfig

    def call(self, model) -> DetailedPassResult:
        import onnx
        from onnxruntime.transformers.optimizer import optimize_model

        proto = to_proto(model)
        before = Counter(f"{n.domain + '.' if n.domain else ''}{n.op_type}" for n in proto.graph.node)
        root = logging.getLogger()
        level = root.level
        if not log.isEnabledFor(logging.DEBUG):
            root.setLevel(logging.ERROR)  # the optimizer narrates every fusion at WARNING/INFO
        try:
            with tempfile.TemporaryDirectory(prefix="forgeml-optimize-") as tmp:
                # From a file: onnxruntime 1.32's optimizer fails on a ModelProto at opt_level >= 1
                # ("Cannot parse data from external tensors").
                path = Path(tmp) / "model.onnx"
                onnx.save_model(proto, str(path))
                optimized = optimize_model(str(path), model_type=self.config.model_type, num_heads=self.config.num_heads,
                                           hidden_size=self.config.hidden_size, opt_level=self.config.opt_level,
                                           use_gpu=False)
                stats = optimized.get_fused_operator_statistics() or {}
        except Exception as e:
            raise PassError(f"optimize: onnxruntime's transformer optimizer failed: {type(e).__name__}: {e}") from e
        finally:
            root.setLevel(level)
        out = optimized.model
        after = Counter(f"{n.domain + '.' if n.domain else ''}{n.op_type}" for n in out.graph.node)
        plain_before = Counter(n.op_type for n in proto.graph.node)
        # A fusion fired where its fused op is more frequent than before (LayerNormalization may be native).
        fused = {op: int(n) - plain_before.get(op, 0) for op, n in stats.items() if int(n) > plain_before.get(op, 0)}
        changed = {op: [before.get(op, 0), after.get(op, 0)] for op in sorted(set(before) | set(after))
                   if before.get(op, 0) != after.get(op, 0)}
        modified = out.SerializeToString() != proto.SerializeToString()
        result = from_proto(out)
        result.graph.sort()
        return DetailedPassResult(result, modified, {"fusions": fused, "op_counts_changed": changed})
