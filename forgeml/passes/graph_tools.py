"""ModelProto edits the precision passes share: node naming, Gemm → MatMul + Add, probe outputs.

These work on ``onnx.ModelProto`` because they prepare a model for onnxruntime's quantizers, which
take protos or files. Every function returns a new proto and leaves its argument alone.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np


def named(proto):
    """A copy whose every node has a unique, non-empty name (quantizers exclude nodes by name)."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    seen: set[str] = set()
    for i, node in enumerate(out.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        node.name = name
        seen.add(name)
    return out


def initializer_names(proto) -> set[str]:
    return {t.name for t in proto.graph.initializer}


def gemm_to_matmul(proto) -> tuple[object, int]:
    """Rewrite ``Gemm(x, W, b)`` with a constant W into ``MatMul(x, W') + b``; returns (model, count).

    onnxruntime's dynamic quantizer and its MatMulNBits quantizer only handle MatMul, and torch
    exports ``nn.Linear`` on 2-D inputs as Gemm. Only the plain form (alpha = beta = 1, no transA)
    is rewritten; ``transB`` is folded into the stored weight.
    """
    import onnx
    from onnx import helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    inits = {t.name: t for t in out.graph.initializer}
    nodes, added, rewritten = [], [], 0
    for node in out.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = (node.op_type == "Gemm" and node.domain in ("", "ai.onnx") and len(node.input) >= 2
                 and node.input[1] in inits and attrs.get("transA", 0) == 0
                 and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0)
        if not plain:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        weight = node.input[1]
        if attrs.get("transB", 0):
            weight = f"{node.input[1]}_transposed"  # a new name: stale value_info may describe the old one
            if weight not in {a.name for a in added}:
                added.append(numpy_helper.from_array(np.ascontiguousarray(w.T), weight))
        has_bias = len(node.input) > 2 and node.input[2] != ""
        mm_out = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], weight], [mm_out], name=f"{node.name}_MatMul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]], name=f"{node.name}_Add"))
        rewritten += 1
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(added)
    if rewritten:
        used = {i for n in out.graph.node for i in n.input} | {o.name for o in out.graph.output}
        kept = [t for t in out.graph.initializer if t.name in used]
        del out.graph.initializer[:]
        out.graph.initializer.extend(kept)
        names = {t.name for t in kept}
        inputs = [i for i in out.graph.input if i.name in used or i.name not in inits or i.name in names]
        del out.graph.input[:]
        out.graph.input.extend(inputs)
    return out, rewritten


_WEIGHT_INPUT = {"Gather": 0}  # which input holds the weight; 1 for MatMul, Gemm, Conv, Attention


def weight_nodes(proto, op_types: Iterable[str]) -> list[str]:
    """Names of nodes of ``op_types`` whose weight input (the table for Gather) is an initializer."""
    inits = initializer_names(proto)
    ops = set(op_types)
    out = []
    for n in proto.graph.node:
        k = _WEIGHT_INPUT.get(n.op_type, 1)
        if n.op_type in ops and len(n.input) > k and n.input[k] in inits:
            out.append(n.name)
    return out


def with_probes(proto, names: Iterable[str]):
    """A copy that also outputs the named intermediate tensors (types left to the runtime)."""
    import onnx
    from onnx import helper

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    have = {o.name for o in out.graph.output}
    produced = {o for n in out.graph.node for o in n.output} | {i.name for i in out.graph.input}
    for name in dict.fromkeys(names):
        if name and name not in have and name in produced:
            out.graph.output.append(helper.make_empty_tensor_value_info(name))
    return out


def node_io(proto) -> dict[str, tuple[list[str], list[str]]]:
    """node name → (float-ish data inputs that are not initializers, outputs)."""
    inits = initializer_names(proto)
    return {n.name: ([i for i in n.input if i and i not in inits], [o for o in n.output if o])
            for n in proto.graph.node}
