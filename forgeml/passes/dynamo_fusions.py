"""onnxscript's transformer fusions, written for the graphs torch's dynamo exporter emits.

onnxruntime's Python fusions (``onnxruntime.transformers``) match TorchScript-exported patterns and
fire only SkipLayerNormalization on a dynamo export; onnxscript's ``rewriter.ort_fusions`` match the
dynamo forms (SDPA as exported, erf GELU, the decomposed LayerNorm residuals). This module runs those
rules in the order onnxscript's own ``fuse_xformers`` uses, with one difference that matters for int8:
by default attention becomes ``MultiHeadAttention`` with the Q/K/V projections left as three MatMuls,
not the packed ``Attention`` op, because the quantizers turn a MatMul into an integer MatMul but leave
a float ``Attention`` (and its QKV projection, a quarter of an encoder's weights) in float.
"""

from __future__ import annotations

from collections import Counter


def fuse(model, *, pack_qkv: bool = False) -> dict[str, int]:
    """Fuse ``model`` (an onnx_ir Model) in place; returns the rules that fired and how often."""
    import onnx_ir.passes.common as common_passes
    from onnxscript.optimizer import optimize
    from onnxscript.rewriter.ort_fusions import shape_optimization
    from onnxscript.rewriter.ort_fusions.attention import fuse_attention
    from onnxscript.rewriter.ort_fusions.bias_gelu import fuse_bias_gelu
    from onnxscript.rewriter.ort_fusions.erfgelu import fuse_erfgelu
    from onnxscript.rewriter.ort_fusions.gelu import fuse_gelu
    from onnxscript.rewriter.ort_fusions.mha import fuse_mha1, fuse_mha2
    from onnxscript.rewriter.ort_fusions.mha_bias import fuse_mha_bias
    from onnxscript.rewriter.ort_fusions.mha_scale import fuse_mha_scale
    from onnxscript.rewriter.ort_fusions.sdpa import fuse_sdpa
    from onnxscript.rewriter.ort_fusions.sdpa_via_mha import replace_sdpa_by_mha
    from onnxscript.rewriter.ort_fusions.skip_normalization import fuse_skip_layer_normalization

    # The rules match shapes and folded constants: infer and fold first, as onnxscript does.
    common_passes.ShapeInferencePass()(model)
    optimize(model)
    shape_optimization.rules.apply_to_model(model)
    optimize(model)
    counts: dict[str, int] = {}
    counts["erf_gelu"] = fuse_erfgelu(model)
    counts["skip_layer_normalization"] = fuse_skip_layer_normalization(model)
    counts["sdpa"] = fuse_sdpa(model, apply_shape_inference=True)
    counts["mha"] = fuse_mha1(model) + fuse_mha2(model)
    if counts["mha"]:
        counts["mha_scale"] = fuse_mha_scale(model)
        counts["mha_bias"] = fuse_mha_bias(model)
        if pack_qkv:
            counts["attention"] = fuse_attention(model)
    counts["gelu"] = fuse_gelu(model)
    counts["bias_gelu"] = fuse_bias_gelu(model)
    counts["sdpa_via_mha"] = replace_sdpa_by_mha(model)
    optimize(model)  # inline what an intermediate rule introduced and no later rule consumed
    return {k: int(v) for k, v in counts.items() if v}


def fused_ops(before, after) -> dict[str, int]:
    """com.microsoft ops the fusions added (op type → count), from two ModelProtos."""
    def count(proto):
        return Counter(n.op_type for n in proto.graph.node if n.domain == "com.microsoft")

    b, a = count(before), count(after)
    return {op: a[op] - b.get(op, 0) for op in sorted(a) if a[op] > b.get(op, 0)}
