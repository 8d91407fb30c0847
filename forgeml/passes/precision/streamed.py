"""Precision passes on models past protobuf's 2 GB limit: the graph is rewritten with its weights held
out, and each new weight is computed from the mapped source a block of rows at a time and appended to
a scratch data file (``formats/weight_file.py``). No ModelProto ever carries a weight, and no more than
one tensor's blocks are in memory at once.

Why not onnxruntime's quantizers here: ``quantize_dynamic(..., use_external_data_format=True)`` loads
every weight into its ModelProto first (measured on the 2.25 GiB model: see docs/design.md), and the
float16 converter takes a ModelProto. What each mode does past 2 GB:

- ``int8-dynamic``: MatMul (and plain Gemm, its weight transposed) with a constant 2-D float weight
  becomes the exact node pattern onnxruntime's dynamic quantizer writes — DynamicQuantizeLinear,
  MatMulInteger, Cast, Mul by (activation scale × weight scale), plus Add for a Gemm bias — which
  onnxruntime fuses into DynamicQuantizeMatMul. Weights symmetric int8, per output channel when the
  CPU choice says so, 7-bit under reduce_range, like onnxruntime's. Conv/Gather/Attention stay float.
- ``int4``: MatMul/Gemm weights packed by onnxruntime's own block kernel (``quantize_matmul_4bits``),
  a block of output columns at a time, into ``MatMulNBits``.
- ``fp16``: onnxruntime's float16 converter rewrites the graph (types, Casts, block lists) on the proto
  whose held-out weights are empty placeholders; each weight it turned to float16 is converted here
  with the converter's own clamping, block by block.
- ``int8-static`` is refused in one line (its calibration runs the float model with every activation
  exposed; not built yet).

The accuracy budget and fallback are the same as below 2 GB (``fallback.search``), with models run by
``runtime.ort.ort_runner_for_ir``: onnxruntime maps the float weights from the source's folder and the
new ones from the scratch file. Unchanged weights are copied into the scratch file too, so the model
a pass returns names one folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from forgeml.errors import PassError
from forgeml.passes.base import DetailedPassResult

ROW_BLOCK_BYTES = 32 << 20  # float32 bytes read from a source weight per block


# --- how the fallback search runs models past 2 GB ----------------------------------------------------

class IrRuns:
    """``fallback.Runs`` for ``onnx_ir`` models whose weights are mapped, never in a proto."""

    @staticmethod
    def runner(model):
        from forgeml.runtime.ort import ort_runner_for_ir

        return ort_runner_for_ir(model)  # as the stage check and users run it (prepacking changes int4's kernels)

    @staticmethod
    def probed(model, names):
        clone = model.clone()
        values = {v.name: v for v in clone.graph.inputs}
        values.update({v.name: v for node in clone.graph for v in node.outputs})
        have = {v.name for v in clone.graph.outputs}
        for name in dict.fromkeys(names):
            if name and name not in have and name in values:
                clone.graph.outputs.append(values[name])
        return clone

    @staticmethod
    def graph(model):
        from forgeml.ir import hold_out

        return hold_out(model, as_inputs=False)[0]


# --- the pass, past 2 GB ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Rewrite:
    """One mode's streamed rewrite: ``candidates(pass, graph, held)`` and
    ``build(pass, graph, held, exclude) -> onnx_ir.Model``."""

    candidates: Callable
    build: Callable
    note: str


def call_large(p, model) -> DetailedPassResult:
    """``PrecisionPass.call`` for a model past ``forgeml.ir.LARGE_MODEL_BYTES``."""
    from forgeml.ir import hold_out, restore, weight_bytes
    from forgeml.passes.graph_tools import named

    rewrite = REWRITES.get(p.name)
    gib = weight_bytes(model) / 2**30
    if rewrite is None:
        raise PassError(f"{p.name}: the model's {gib:.2f} GiB of weights are past protobuf's 2 GB limit, where "
                        f"only int8 (dynamic), int4 and fp16 are built so far; choose one of those for `quantize.mode`")
    graph, held = hold_out(model, as_inputs=False)
    graph = named(graph)
    float_model = restore(graph, held)  # the same tensors (nothing read), nodes named as the exclusions name them
    candidates = rewrite.candidates(p, graph, held)
    if not candidates:
        raise PassError(f"{p.name}: {p.no_candidates()}")

    result = p.search(float_model, graph, candidates, lambda exclude: rewrite.build(p, graph, held, exclude),
                      runs=IrRuns)
    result.details["large_model"] = {"weights_held_out": len(held), "gib": round(gib, 3), "note": rewrite.note}
    return result


def _float_weight(graph, held, name: str):
    """The held-out 2-D float32 tensor named ``name``, or None."""
    t = held.get(name)
    if t is None or len(t.shape) != 2:
        return None
    import onnx_ir

    return t if t.dtype == onnx_ir.DataType.FLOAT else None


def _gemm_plain(node) -> tuple[bool, bool]:
    """(a Gemm these rewrites take: alpha = beta = 1, no transA; its transB)."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    ok = attrs.get("transA", 0) == 0 and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
    return ok, bool(attrs.get("transB", 0))


def _matmul_candidates(p, graph, held) -> list[str]:
    """MatMul/Gemm nodes whose weight is a held-out 2-D float32 constant (a Gemm only in its plain form)."""
    out = []
    for n in graph.graph.node:
        if n.domain not in ("", "ai.onnx") or len(n.input) < 2 or _float_weight(graph, held, n.input[1]) is None:
            continue
        if n.op_type == "MatMul" or (n.op_type == "Gemm" and _gemm_plain(n)[0]):
            out.append(n.name)
    return out


def _rows(n_rows: int, row_bytes: int) -> int:
    return max(1, ROW_BLOCK_BYTES // max(1, row_bytes))


def _absmax(a: np.ndarray, axis: int) -> np.ndarray:
    """Max |a| along ``axis`` (0: per column, 1: per row), a block of rows at a time."""
    step = _rows(a.shape[0], a.shape[1] * 4)
    if axis == 0:
        out = np.zeros(a.shape[1], np.float32)
        for r in range(0, a.shape[0], step):
            np.maximum(out, np.abs(a[r:r + step]).max(axis=0), out=out)
        return out
    return np.concatenate([np.abs(a[r:r + step]).max(axis=1) for r in range(0, a.shape[0], step)])


def _kn_blocks(a: np.ndarray, transposed: bool):
    """The weight as [K, N] row blocks (``a`` is [N, K] when ``transposed``), each a float32 array."""
    if not transposed:
        step = _rows(a.shape[0], a.shape[1] * 4)
        for r in range(0, a.shape[0], step):
            yield a[r:r + step]
    else:
        k = a.shape[1]
        step = _rows(k, a.shape[0] * 4)
        for c in range(0, k, step):
            yield a[:, c:c + step].T


class _Graph:
    """The proto being rewritten plus the tensors that go with it (all written into one WeightFile)."""

    def __init__(self, graph, held):
        import onnx

        from forgeml.formats.weight_file import WeightFile

        self.proto = onnx.ModelProto()
        self.proto.CopyFrom(graph)
        self.src = held
        self.out: dict = {}  # name -> the tensor the new model gets
        self.file = WeightFile()

    def placeholder(self, name: str, data_type: int, dims):
        """An initializer that ``restore`` fills with ``self.out[name]``."""
        from onnx import TensorProto

        from forgeml.ir import HELD_OUT_LOCATION

        t = TensorProto(name=name, data_type=data_type, dims=list(dims))
        t.data_location = TensorProto.EXTERNAL
        t.external_data.add(key="location", value=HELD_OUT_LOCATION)
        return t

    def finish(self):
        """Drop initializers nothing uses, copy the held-out ones still used into the file, and return
        the ``onnx_ir.Model``."""
        from forgeml.formats.weight_file import release
        from forgeml.ir import restore

        g = self.proto.graph
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        kept = [t for t in g.initializer if t.name in used]
        del g.initializer[:]
        g.initializer.extend(kept)
        names = {t.name for t in kept}
        for name, tensor in self.src.items():
            if name in names and name not in self.out:
                self.out[name] = self.file.copy(name, tensor)
            else:
                release(tensor)
        self.file.close()
        model = restore(self.proto, self.out)
        model.graph.sort()
        return model


# --- int8 dynamic -----------------------------------------------------------------------------------

def _int8_build(p, graph, held, exclude):
    import onnx_ir
    from onnx import TensorProto, helper

    from forgeml.formats.weight_file import release
    from forgeml.passes.precision.cpu_features import int8_settings

    cpu = int8_settings()  # the choice Int8DynamicPass.settings() records
    per_channel = cpu.per_channel if p.config.per_channel is None else p.config.per_channel
    reduce_range = cpu.reduce_range if p.config.reduce_range is None else p.config.reduce_range
    qmax = 64 if reduce_range else 127  # onnxruntime's symmetric int8 range, 7 bits under reduce_range
    todo = set(_matmul_candidates(p, graph, held)) - set(exclude)
    g = _Graph(graph, held)
    nodes, quantized_inputs, done_weights = [], {}, {}
    for node in g.proto.graph.node:
        if node.name not in todo:
            nodes.append(node)
            continue
        transposed = node.op_type == "Gemm" and _gemm_plain(node)[1]
        x, wname = node.input[0], node.input[1]
        if x not in quantized_inputs:
            q = [f"{x}_quantized", f"{x}_scale", f"{x}_zero_point"]
            nodes.append(helper.make_node("DynamicQuantizeLinear", [x], q, name=f"{x}_QuantizeLinear"))
            quantized_inputs[x] = q
        xq, xs, xz = quantized_inputs[x]
        key = (wname, transposed)
        if key not in done_weights:
            src = held[wname]
            a = src.numpy()
            k, n = (a.shape[1], a.shape[0]) if transposed else a.shape
            amax = _absmax(a, 1 if transposed else 0)
            if not per_channel:
                amax = np.array(amax.max(), np.float32)
            scale = np.where(amax > 0, amax / np.float32(qmax), np.float32(1.0)).astype(np.float32)
            base = f"{wname}_transposed" if transposed else wname
            qname, sname, zname = f"{base}_quantized", f"{base}_scale", f"{base}_zero_point"
            g.out[qname] = g.file.add(qname, onnx_ir.DataType.INT8, (k, n), (
                np.clip(np.rint(b / scale), -qmax, qmax).astype(np.int8) for b in _kn_blocks(a, transposed)))
            g.out[sname] = g.file.add(sname, onnx_ir.DataType.FLOAT, scale.shape, [scale])
            g.out[zname] = g.file.add(zname, onnx_ir.DataType.INT8, scale.shape, [np.zeros(scale.shape, np.int8)])
            g.proto.graph.initializer.extend([g.placeholder(qname, TensorProto.INT8, (k, n)),
                                              g.placeholder(sname, TensorProto.FLOAT, scale.shape),
                                              g.placeholder(zname, TensorProto.INT8, scale.shape)])
            del a
            release(src)
            done_weights[key] = (qname, sname, zname)
        qname, sname, zname = done_weights[key]
        y, bias, out = _matmul_output(node)
        nodes += [
            helper.make_node("Mul", [xs, sname], [f"{node.name}_quant_scales_mul:0"], name=f"{node.name}_scales_mul"),
            helper.make_node("MatMulInteger", [xq, qname, xz, zname], [f"{y}_output_quantized"], name=f"{node.name}_quant"),
            helper.make_node("Cast", [f"{y}_output_quantized"], [f"{y}_output_quantized_cast_output"],
                             name=f"{node.name}_cast", to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"{y}_output_quantized_cast_output", f"{node.name}_quant_scales_mul:0"], [out],
                             name=f"{node.name}_output_scale_mul")]
        if bias:
            nodes.append(helper.make_node("Add", [out, bias], [y], name=f"{node.name}_bias_add"))
    del g.proto.graph.node[:]
    g.proto.graph.node.extend(nodes)
    _drop_value_info(g.proto, {name for name, _ in done_weights})
    return g.finish()


def _matmul_output(node) -> tuple[str, str | None, str]:
    """(the node's output, a Gemm's bias or None, the name the quantized MatMul writes): with a bias, the
    MatMul writes ``<y>_matmul`` and an Add of the bias gives ``y``."""
    y = node.output[0]
    bias = node.input[2] if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] else None
    return y, bias, f"{y}_matmul" if bias else y


def _drop_value_info(proto, names) -> None:
    """value_info of tensors whose type changed (a quantized weight's old float entry) would mislead."""
    keep = [v for v in proto.graph.value_info if v.name not in names]
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(keep)


# --- int4 (MatMulNBits) -----------------------------------------------------------------------------

def _int4_build(p, graph, held, exclude):
    import onnx_ir
    from onnx import TensorProto, helper
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    from forgeml.formats.weight_file import release

    block, sym = p.config.block_size, p.config.symmetric
    level = p._accuracy_level()
    todo = set(_matmul_candidates(p, graph, held)) - set(exclude)
    g = _Graph(graph, held)
    nodes, done = [], {}
    for node in g.proto.graph.node:
        if node.name not in todo:
            nodes.append(node)
            continue
        transposed = node.op_type == "Gemm" and _gemm_plain(node)[1]
        wname = node.input[1]
        key = (wname, transposed)
        if key not in done:
            src = held[wname]
            a = src.numpy()
            k, n = (a.shape[1], a.shape[0]) if transposed else a.shape
            k_blocks = -(-k // block)
            blob = block // 2
            scales = np.zeros((n, k_blocks), np.float32)
            zeros = np.zeros((n, (k_blocks + 1) // 2), np.uint8)
            step = max(1, ROW_BLOCK_BYTES // (k * 4))

            def packed(a=a, k=k, n=n, k_blocks=k_blocks, blob=blob, scales=scales, zeros=zeros, step=step,
                       transposed=transposed):
                for c in range(0, n, step):
                    cols = min(step, n - c)
                    w = np.zeros((k_blocks * block, cols), np.float32)  # K padded to whole blocks
                    w[:k] = a[c:c + cols].T if transposed else a[:, c:c + cols]
                    out = np.zeros((cols, k_blocks, blob), np.uint8)
                    sc = np.zeros((cols, k_blocks), np.float32)
                    zp = np.zeros((cols, (k_blocks + 1) // 2), np.uint8)
                    quantize_matmul_4bits(out, w, sc, zp, block, cols, k_blocks * block, sym)
                    scales[c:c + cols], zeros[c:c + cols] = sc, zp
                    yield out

            base = f"{wname}_transposed" if transposed else wname
            qname, sname, zname = f"{base}_Q4", f"{base}_scales", f"{base}_zero_points"
            g.out[qname] = g.file.add(qname, onnx_ir.DataType.UINT8, (n, k_blocks, blob), packed())
            g.out[sname] = g.file.add(sname, onnx_ir.DataType.FLOAT, scales.shape, [scales])
            inits = [g.placeholder(qname, TensorProto.UINT8, (n, k_blocks, blob)),
                     g.placeholder(sname, TensorProto.FLOAT, scales.shape)]
            names = [qname, sname]
            if not sym:
                g.out[zname] = g.file.add(zname, onnx_ir.DataType.UINT8, zeros.shape, [zeros])
                inits.append(g.placeholder(zname, TensorProto.UINT8, zeros.shape))
                names.append(zname)
            g.proto.graph.initializer.extend(inits)
            del a
            release(src)
            done[key] = (names, k, n)
        names, k, n = done[key]
        y, bias, out = _matmul_output(node)
        attrs = {"K": k, "N": n, "bits": 4, "block_size": block}
        if level:
            attrs["accuracy_level"] = level
        nodes.append(helper.make_node("MatMulNBits", [node.input[0], *names], [out], name=f"{node.name}_Q4",
                                      domain="com.microsoft", **attrs))
        if bias:
            nodes.append(helper.make_node("Add", [out, bias], [y], name=f"{node.name}_bias_add"))
    del g.proto.graph.node[:]
    g.proto.graph.node.extend(nodes)
    if done and not any(o.domain == "com.microsoft" for o in g.proto.opset_import):
        g.proto.opset_import.add(domain="com.microsoft", version=1)
    return g.finish()


# --- fp16 -------------------------------------------------------------------------------------------

def _fp16_candidates(p, graph, held) -> list[str]:
    return p.candidates(graph)


def _fp16_build(p, graph, held, exclude):
    import warnings

    import onnx
    import onnx_ir
    from onnx import TensorProto
    from onnxruntime.transformers import float16

    from forgeml.formats.weight_file import release
    from forgeml.ir import HELD_OUT_LOCATION

    # shape inference on the graph with the weights as typed inputs (the converter needs every value's type to
    # place its Casts), then the weights back as empty placeholders: the converter only flips their type
    work = onnx.ModelProto()
    work.CopyFrom(graph)
    g = work.graph
    weights = {t.name: t for t in g.initializer if t.name in held}
    for t in weights.values():
        g.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    keep = [t for t in g.initializer if t.name not in weights]
    del g.initializer[:]
    g.initializer.extend(keep)
    work = onnx.shape_inference.infer_shapes(work)
    g = work.graph
    inputs = [i for i in g.input if i.name not in weights]
    del g.input[:]
    g.input.extend(inputs)
    for name, t in weights.items():
        g.initializer.append(onnx.TensorProto(name=name, data_type=t.data_type, dims=[0]))
    kwargs = p.converter_kwargs(exclude, shape_infer=False)  # shapes were inferred above, weights present
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            work = float16.convert_float_to_float16(work, **kwargs)
    except Exception as e:
        raise PassError(f"fp16: the float16 converter failed: {type(e).__name__}: {e}") from e
    _drop_value_info(work, set(weights))
    rw = _Graph(work, {})
    rw.src = held
    for t in rw.proto.graph.initializer:
        if t.name not in weights:
            continue
        src = held[t.name]
        del t.dims[:]
        t.dims.extend(src.shape)
        t.data_location = TensorProto.EXTERNAL
        t.external_data.add(key="location", value=HELD_OUT_LOCATION)
        if t.data_type == TensorProto.FLOAT16 and src.dtype == onnx_ir.DataType.FLOAT:
            a = src.numpy()
            flat = a.reshape(-1)
            step = ROW_BLOCK_BYTES // 4
            rw.out[t.name] = rw.file.add(t.name, onnx_ir.DataType.FLOAT16, tuple(a.shape), (
                float16.convert_np_to_float16(flat[i:i + step]) for i in range(0, flat.size, step)))
            del a, flat
            release(src)
    return rw.finish()


REWRITES: dict[str, Rewrite] = {
    "int8-dynamic": Rewrite(_matmul_candidates, _int8_build,
                            "weights quantized by forgeml a block of rows at a time into a scratch file (onnxruntime's "
                            "quantizer loads every weight); MatMul/Gemm only, other op types stay float"),
    "int4": Rewrite(_matmul_candidates, _int4_build,
                    "MatMul/Gemm weights packed by onnxruntime's block kernel a block of columns at a time"),
    "fp16": Rewrite(_fp16_candidates, _fp16_build,
                    "graph rewritten by onnxruntime's float16 converter with the weights held out; weights "
                    "converted a block at a time"),
}
