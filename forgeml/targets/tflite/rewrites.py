"""ONNX → ONNX rewrites into forms onnx2tf lowers correctly: the tflite target's second try.

onnx2tf turns channel-first graphs channel-last by rules that guess each tensor's layout; some
graphs defeat the guess and onnx2tf either fails or builds a model that computes something else.
Each rewrite here replaces one such pattern by ONNX ops with the *same* numbers (exact, not an
approximation) that onnx2tf handles. The target runs them only when the first onnx2tf run fails or
disagrees with onnxruntime, then retries (``lowering.py``); parity in the TFLite interpreter against
the source framework judges the result as for any other route.

Each rewrite changes the proto in place and returns how many nodes it rewrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

# Element-wise ops with multidirectional (numpy) broadcasting.
_BROADCAST = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "Sum", "Mod", "Equal", "Less",
                        "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "BitShift", "Where"})


@dataclass(frozen=True)
class Rewrite:
    name: str
    apply: Callable  # (onnx.ModelProto) -> int: nodes rewritten, in place


def _ranks(proto) -> dict[str, int]:
    """Tensor name → rank, for every tensor whose rank shape inference knows."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    out = {t.name: len(t.dims) for t in proto.graph.initializer}
    for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        t = v.type.tensor_type
        if t.HasField("shape"):
            out[v.name] = len(t.shape.dim)
    return out


def _opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)


def _fresh(proto, base: str) -> str:
    """A tensor/node name not used in the graph yet."""
    used = {t.name for t in proto.graph.initializer} | {i.name for i in proto.graph.input}
    used |= {o for n in proto.graph.node for o in n.output} | {n.name for n in proto.graph.node}
    name, i = base, 1
    while name in used:
        i += 1
        name = f"{base}_{i}"
    return name


def equal_broadcast_ranks(proto) -> int:
    """``x[1,C,H,W] + b[C,H,W]`` → ``x + b[1,C,H,W]``: give every operand of a broadcasting op the
    output's rank (leading 1s, exactly numpy's broadcasting rule). onnx2tf transposes the rank-4 side
    channel-last but lines the lower-rank side up by its trailing axes in the old order, so the shapes
    no longer broadcast (or, when they happen to, the sum is wrong). A constant operand is reshaped
    (a new initializer when others share it); any other gets an ``Unsqueeze`` just before the op."""
    from onnx import helper, numpy_helper

    ranks = _ranks(proto)
    inits = {t.name: t for t in proto.graph.initializer}
    users: dict[str, int] = {}
    for n in proto.graph.node:
        for i in n.input:
            users[i] = users.get(i, 0) + 1
    new_nodes, changed = [], 0
    for node in proto.graph.node:
        if node.domain in ("", "ai.onnx") and node.op_type in _BROADCAST:
            known = [ranks.get(i) for i in node.input if i]
            if known and all(r is not None for r in known):
                rank = max(known)
                touched = False
                for k, name in enumerate(node.input):
                    r = ranks[name]
                    if rank < 3 or r == rank or r == 0:
                        continue
                    lead = rank - r
                    if name in inits:
                        arr = numpy_helper.to_array(inits[name])
                        arr = arr.reshape((1,) * lead + arr.shape)
                        if users.get(name, 0) == 1:
                            inits[name].CopyFrom(numpy_helper.from_array(arr, name))
                            ranks[name] = rank
                        else:
                            new = _fresh(proto, f"{name}_rank{rank}")
                            proto.graph.initializer.append(numpy_helper.from_array(arr, new))
                            inits[new], ranks[new], users[new] = proto.graph.initializer[-1], rank, 1
                            node.input[k] = new
                    else:
                        out = _fresh(proto, f"{name}_rank{rank}")
                        axes = list(range(lead))
                        if _opset(proto) >= 13:
                            ax = _fresh(proto, f"{out}_axes")
                            proto.graph.initializer.append(numpy_helper.from_array(np.array(axes, np.int64), ax))
                            unsq = helper.make_node("Unsqueeze", [name, ax], [out], name=_fresh(proto, out))
                        else:
                            unsq = helper.make_node("Unsqueeze", [name], [out], name=_fresh(proto, out), axes=axes)
                        new_nodes.append(unsq)
                        ranks[out] = rank
                        node.input[k] = out
                    touched = True
                changed += touched
        new_nodes.append(node)
    if changed:
        del proto.graph.node[:]
        proto.graph.node.extend(new_nodes)
    return changed


def symbolic_negative_dims(proto) -> int:
    """A ``-1`` dim_value (paddle2onnx and older exporters write it for "unknown") → a named dim.
    onnx2tf copies it into a TensorFlow shape, which refuses it ("Dimension -1 must be >= 0");
    a named dim is what the exporter meant. Counts the tensors changed."""
    changed = 0
    for v in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
        touched = False
        for k, d in enumerate(v.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value < 0:
                d.Clear()
                d.dim_param = f"{v.name}_dim{k}"
                touched = True
        changed += touched
    return changed


_SCOPE_BAD = re.compile(r"[^A-Za-z0-9_.\\/>-]")


def scope_safe_node_names(proto) -> int:
    """Node names TensorFlow accepts as name scopes (``Softmax@0`` → ``Softmax_0``): onnx2tf opens a
    scope per node and fails on any other character. Only names change; tensors keep theirs."""
    names = {n.name for n in proto.graph.node}
    changed = 0
    for node in proto.graph.node:
        if node.name and _SCOPE_BAD.search(node.name):
            new = _SCOPE_BAD.sub("_", node.name)
            base, i = new, 1
            while new in names:
                i += 1
                new = f"{base}_{i}"
            names.add(new)
            node.name = new
            changed += 1
    return changed


REWRITES = (Rewrite("symbolic-negative-dims", symbolic_negative_dims),  # first: shape inference needs it
            Rewrite("scope-safe-node-names", scope_safe_node_names),
            Rewrite("equal-broadcast-ranks", equal_broadcast_ranks))


def rewrite(proto) -> tuple[object, dict[str, int]]:
    """A rewritten copy of ``proto`` and, per rewrite that changed something, how many nodes."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    done = {}
    for r in REWRITES:
        n = r.apply(out)
        if n:
            done[r.name] = n
    return out, done
