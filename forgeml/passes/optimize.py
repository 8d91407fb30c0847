"""optimize: transformer fusions (onnxscript's for dynamo graphs, then onnxruntime's) and basic optimizations.

Two fusers run in turn:
1. onnxscript's ``rewriter.ort_fusions`` (``forgeml.passes.dynamo_fusions``), written for the dynamo
   exporter's graphs: MultiHeadAttention (Q/K/V projections left as MatMuls, so int8 still quantizes
   them), SkipLayerNormalization, Gelu/BiasGelu;
2. ``onnxruntime.transformers.optimizer.optimize_model``: onnxruntime's basic optimizations (constant
   folding, redundant node removal) and its Python fusions — Attention, SkipLayerNormalization,
   Gelu/FastGelu/BiasGelu, EmbedLayerNormalization — for the TorchScript-style patterns still left.
The manifest records the fused ops (op → count), the onnxscript rules that fired and the op counts
that changed.

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
    dynamo_fusions: bool = True  # onnxscript's fusions first (forgeml.passes.dynamo_fusions)
    pack_qkv: bool = False  # onnxscript: packed Attention instead of MultiHeadAttention (stays float under int8)


class OptimizePass(ForgePass):
    name = "optimize"
    Config = OptimizeConfig

    def call(self, model) -> DetailedPassResult:
        import onnx
        from onnxruntime.transformers.optimizer import optimize_model

        original = proto = to_proto(model)
        rules: dict[str, int] = {}
        if self.config.dynamo_fusions:
            proto, rules = self._dynamo_fusions(proto)
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
        except Exception as e:
            raise PassError(f"optimize: onnxruntime's transformer optimizer failed: {type(e).__name__}: {e}") from e
        finally:
            root.setLevel(level)
        out = optimized.model
        after = Counter(f"{n.domain + '.' if n.domain else ''}{n.op_type}" for n in out.graph.node)
        from forgeml.passes.dynamo_fusions import fused_ops

        fused = fused_ops(original, out)  # a fusion fired where its com.microsoft op is more frequent than before
        before = Counter(f"{n.domain + '.' if n.domain else ''}{n.op_type}" for n in original.graph.node)
        changed = {op: [before.get(op, 0), after.get(op, 0)] for op in sorted(set(before) | set(after))
                   if before.get(op, 0) != after.get(op, 0)}
        modified = out.SerializeToString() != original.SerializeToString()
        result = from_proto(out)
        result.graph.sort()
        return DetailedPassResult(result, modified, {"fusions": fused, "dynamo_rules": rules,
                                                     "op_counts_changed": changed})

    def _dynamo_fusions(self, proto):
        """onnxscript's fusions on a copy; a rule that fails leaves the model as it came (onnxruntime's still run)."""
        from forgeml.passes.dynamo_fusions import fuse

        model = from_proto(proto)
        try:
            rules = fuse(model, pack_qkv=self.config.pack_qkv)
        except Exception as e:  # onnxscript's rewriter is young; its failure costs a fusion, not the run
            log.warning("optimize: onnxscript's fusions failed (%s: %s); onnxruntime's fusions only", type(e).__name__, e)
            return proto, {}
        return to_proto(model), rules
