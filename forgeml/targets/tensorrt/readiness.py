"""TensorRT readiness: read an ONNX model and say what the ONNX-TensorRT parser will reject or change.

Static: needs neither TensorRT nor a GPU, so it runs in CI, in ``forgeml check-trt``, and before every
TensorRT build (where it saves a user the minutes a failing engine build costs). Rules, each a
``Finding.rule``:

* ``opset``: the default-domain opset is outside the range the support matrix covers.
* ``unsupported-op``: an ONNX op the parser does not import (or does not know: newer than the matrix).
* ``attribute``: an op the parser imports only with some attributes/inputs (e.g. Slice ``axes`` must be
  an initializer, Resize modes, MaxPool without ``Indices``, Q/DQ zero points of 0).
* ``dtype``: a tensor type TensorRT lacks (UINT16, STRING, …); a quantized type outside Q/DQ; UINT8
  inside the network; a data type an op does not take (MatMul on INT64).
* ``cast``: tensors the parser casts down (DOUBLE→FLOAT; INT64→INT32 before TensorRT 9), with
  values that will be clamped.
* ``data-dependent-shape``: outputs whose shape depends on tensor values (NonZero, NonMaxSuppression,
  TopK with a computed K, Unique, Compress).
* ``plugin``: ops outside the ONNX domains: the parser looks up a TensorRT plugin by the op's name;
  and ONNX ops the parser imports only as a plugin (RoiAlign -> ``ROIAlign_TRT``), a warning.
* ``control-flow``: If branches whose outputs differ in rank (TensorRT's conditional needs one rank per
  output), Loop scan outputs whose per-iteration shape is not static.
* ``shape``: ops that need a build-time shape (EyeLike of a tensor whose dims are only known at run time).
* ``dynamic-shape`` (info): inputs with symbolic dims, which need an optimization profile.

Severity ``error`` blocks (the parser or builder will fail); ``warning`` builds but may change numbers
or need care at run time; ``info`` is context. The support facts live in ``trt_support``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from forgeml.errors import InputError, first_line
from forgeml.targets.tensorrt.support import DEFAULT_TABLE, TABLES, SupportTable

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

SEVERITIES = ("error", "warning", "info")
_ONNX_DOMAINS = ("", "ai.onnx")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_INT64_SENTINELS = (-(2**63), 2**63 - 1)  # "to the end" in Slice: clamping these is harmless
_DATA_DEPENDENT = {"NonZero", "NonMaxSuppression", "Unique", "Compress"}
_RESIZE = {
    "coordinate_transformation_mode": ("half_pixel", {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn",
                                                      "asymmetric", "align_corners"}),
    "mode": ("nearest", {"nearest", "linear"}),
    "nearest_mode": ("round_prefer_floor", {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}),
    "keep_aspect_ratio_policy": ("stretch", {"stretch"}),
}
# op -> index of an input that must be a build-time constant (initializer or Constant output)
_CONST_INPUT = {"CumSum": (1, "axis"), "Pad": (3, "axes"), "Slice": (3, "axes"), "Squeeze": (1, "axes"),
                "Unsqueeze": (1, "axes"), "OneHot": (1, "depth"),
                **{op: (1, "axes") for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
                                               "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum",
                                               "ReduceSumSquare")}}


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str  # error | warning | info
    message: str
    node: str = ""  # node name (or tensor name for dtype/cast findings)
    op: str = ""

    def to_json(self) -> dict:
        d = {"rule": self.rule, "severity": self.severity, "message": self.message}
        if self.node:
            d["node"] = self.node
        if self.op:
            d["op"] = self.op
        return d

    def line(self) -> str:
        where = f"{self.op} {self.node!r}: " if self.op else (f"{self.node!r}: " if self.node else "")
        return f"{self.severity:7} {self.rule:20} {where}{self.message}"


@dataclass
class Readiness:
    """The verdict: ``ready`` when no finding blocks the parser or the builder."""

    tensorrt: str  # which support table was used
    source: str
    findings: list[Finding] = field(default_factory=list)
    ops: dict[str, int] = field(default_factory=dict)

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ready(self) -> bool:
        return not self.blocking

    def counts(self) -> dict[str, int]:
        c = Counter(f.severity for f in self.findings)
        return {s: c.get(s, 0) for s in SEVERITIES}

    def summary(self) -> str:
        c = self.counts()
        verdict = "ready" if self.ready else "not ready"
        return (f"{verdict} for TensorRT {self.tensorrt}: {c['error']} blocking, {c['warning']} warning(s), "
                f"{c['info']} note(s)")

    def to_json(self) -> dict:
        return {"ready": self.ready, "tensorrt": self.tensorrt, "source": self.source, "counts": self.counts(),
                "findings": [f.to_json() for f in self.findings], "ops": self.ops}


# --- entry points ------------------------------------------------------------------------------

def check_file(path: str | Path, *, tensorrt: str = DEFAULT_TABLE, plugins: tuple[str, ...] = ()) -> Readiness:
    """Load an .onnx file (external data included) and check it. Bad files raise ``InputError``."""

    path = Path(path)
    from forgeml.formats import onnx_file

    try:
        proto = onnx_file.load(path)
    except InputError as e:
        raise InputError(f"check-trt: {first_line(e)}") from e
    return check_model(proto, tensorrt=tensorrt, plugins=plugins)


def check_model(proto: onnx.ModelProto, *, tensorrt: str = DEFAULT_TABLE,
                plugins: tuple[str, ...] = ()) -> Readiness:
    """Check an in-memory ``ModelProto`` against one TensorRT release's support table."""
    if tensorrt not in TABLES:
        raise InputError(f"check-trt: no support table for TensorRT {tensorrt!r}; known: {', '.join(TABLES)}")
    return _Checker(proto, TABLES[tensorrt], frozenset(plugins)).run()


# --- the rules ---------------------------------------------------------------------------------

class _Checker:
    def __init__(self, proto, table: SupportTable, plugins: frozenset[str]):
        self.proto = proto
        self.table = table
        self.plugins = plugins
        self.findings: list[Finding] = []
        self.types: dict[str, str] = {}  # tensor name -> ONNX dtype name
        self.ranks: dict[str, int] = {}
        self.dims: dict[str, tuple[int | None, ...]] = {}  # static dims, None where symbolic/unknown
        self.functions = {(f.domain, f.name): f for f in proto.functions}
        self.ops: Counter = Counter()

    def add(self, rule: str, severity: str, message: str, node: str = "", op: str = "") -> None:
        self.findings.append(Finding(rule, severity, message, node, op))

    def run(self) -> Readiness:
        self._opset()
        self._infer_types()
        graph = self.proto.graph
        self._graph_dtypes(graph)
        self._dynamic_inputs(graph)
        consts = {t.name: t for t in graph.initializer}
        self._walk(graph, consts, outer=set())
        self._cast(graph)
        order = {s: i for i, s in enumerate(SEVERITIES)}
        self.findings.sort(key=lambda f: order[f.severity])
        return Readiness(self.table.version, self.table.source, self.findings, dict(self.ops.most_common()))

    # -- model-level --

    def _opset(self) -> None:
        opsets = {o.domain: o.version for o in self.proto.opset_import}
        v = opsets.get("", opsets.get("ai.onnx"))
        if v is None:
            return
        if v < self.table.min_opset:
            self.add("opset", "error", f"opset {v}: the parser rejects models older than opset "
                     f"{self.table.min_opset}; re-export with a newer opset")
        elif v > self.table.max_opset:
            self.add("opset", "warning", f"opset {v} is newer than the {self.table.max_opset} the TensorRT "
                     f"{self.table.version} support matrix covers; ops whose newer versions changed may be rejected "
                     f"(re-export with `options.opset` {self.table.max_opset} if the build fails)")

    def _infer_types(self) -> None:
        import onnx

        try:
            inferred = onnx.shape_inference.infer_shapes(self.proto, strict_mode=False, data_prop=True)
        except Exception as e:  # shape inference raises several types; the types it got are still used
            self.add("dtype", "warning", f"ONNX shape inference failed ({first_line(e)[:200]}); "
                     f"types of intermediate tensors are unknown, so per-op type checks are partial")
            inferred = self.proto

        def note(vi) -> None:
            t = vi.type.tensor_type
            if vi.type.HasField("tensor_type") and t.elem_type:
                self.types[vi.name] = onnx.TensorProto.DataType.Name(t.elem_type)
                if t.HasField("shape"):
                    self.ranks[vi.name] = len(t.shape.dim)
                    self.dims[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                               for d in t.shape.dim)

        def visit(g) -> None:
            for vi in (*g.input, *g.output, *g.value_info):
                note(vi)
            for t in g.initializer:
                self.types[t.name] = onnx.TensorProto.DataType.Name(t.data_type)
                self.ranks[t.name] = len(t.dims)
                self.dims[t.name] = tuple(t.dims)
            for n in g.node:
                for a in n.attribute:
                    if a.type == onnx.AttributeProto.GRAPH:
                        visit(a.g)
                    elif a.type == onnx.AttributeProto.GRAPHS:
                        for sub in a.graphs:
                            visit(sub)

        visit(inferred.graph)

    def _graph_dtypes(self, graph) -> None:
        """Every tensor's dtype against what TensorRT holds; network I/O gets the io-only allowance."""
        io = {v.name for v in (*graph.input, *graph.output)}
        seen: set[str] = set()
        t = self.table
        known = t.native | set(t.cast) | t.quantized | t.io_only
        for name, dtype in self.types.items():
            if dtype in t.native or dtype in t.cast or dtype in seen:
                continue
            if dtype not in known:
                seen.add(dtype)
                users = sorted(n for n, d in self.types.items() if d == dtype)
                self.add("dtype", "error", f"{dtype} tensors ({_names(users)}): TensorRT {t.version} has no {dtype} "
                         f"type; change the model to use one of {', '.join(sorted(t.native))}", node=users[0])
            elif dtype in t.io_only and name not in io:
                self.add("dtype", "error", f"{dtype} is allowed only as a network input/output, not inside the "
                         f"network; cast it next to the input/output", node=name)
        self._quantized_outside_qdq(graph)

    def _quantized_outside_qdq(self, graph) -> None:
        """INT8/INT4/FP8 exist in TensorRT only between a QuantizeLinear and a DequantizeLinear."""
        qdq = {"QuantizeLinear", "DequantizeLinear"}
        for n in graph.node:
            if n.op_type in qdq or n.domain not in _ONNX_DOMAINS:
                continue
            for name in (*n.input, *n.output):
                dtype = self.types.get(name)
                if name and dtype in self.table.quantized:
                    self.add("dtype", "error", f"{dtype} tensor {name!r} used by {n.op_type}: TensorRT supports "
                             f"{dtype} only through quantization (QuantizeLinear -> DequantizeLinear pairs); "
                             f"dequantize before this op", n.name or name, n.op_type)
                    break

    def _dynamic_inputs(self, graph) -> None:
        inits = {t.name for t in graph.initializer}
        for v in graph.input:
            if v.name in inits or not v.type.HasField("tensor_type"):
                continue
            dims = v.type.tensor_type.shape.dim
            dyn = [f"{i}={d.dim_param or '?'}" for i, d in enumerate(dims) if not d.HasField("dim_value")]
            if dyn:
                self.add("dynamic-shape", "info", f"dynamic dims {', '.join(dyn)}: the engine needs an optimization "
                         f"profile (forgeml makes one from the parity inputs, or give `TensorRTConfig.profiles` "
                         f"{v.name}:MIN:OPT:MAX)", node=v.name)

    # -- node-level --

    def _walk(self, graph, consts: dict, outer: set[str], depth: int = 0) -> None:
        """Check every node of ``graph`` (and its subgraphs, and the local functions it calls)."""
        import onnx

        constant_names = set(consts) | outer
        consts = dict(consts)
        for n in graph.node:
            if n.op_type == "Constant" and n.domain in _ONNX_DOMAINS:
                constant_names.update(n.output)
                value = next((a.t for a in n.attribute if a.name == "value"), None)
                if value is not None and n.output:
                    consts[n.output[0]] = value
        for n in graph.node:
            self._node(n, constant_names, consts)
            for a in n.attribute:
                subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
                for sub in subs:
                    sub_consts = {**consts, **{t.name: t for t in sub.initializer}}
                    self._walk(sub, sub_consts, constant_names, depth + 1)

    def _node(self, n, constants: set[str], consts: dict) -> None:
        name = n.name or (n.output[0] if n.output else n.op_type)
        op = n.op_type
        if n.domain not in _ONNX_DOMAINS:
            fn = self.functions.get((n.domain, op))
            if fn is not None and self.table.major >= 9:
                self.ops[f"{n.domain}::{op}"] += 1
                for inner in fn.node:  # local functions are inlined by the parser (TensorRT >= 9)
                    self._node(inner, constants | {o for x in fn.node if x.op_type == "Constant" for o in x.output},
                               consts)
                return
            self._plugin(n, name)
            return
        self.ops[op] += 1
        t = self.table
        if op in _DATA_DEPENDENT:
            self._data_dependent(n, name)
            if op not in t.ops:
                return
        elif op not in t.ops:
            why = "the support matrix lists it as unsupported" if op in t.unsupported else \
                "it is not in the support matrix (newer than it, or not an operator the parser imports)"
            self.add("unsupported-op", "error", f"the ONNX-TensorRT parser cannot import {op}: {why}; rewrite it with "
                     f"supported ops or provide a plugin", name, op)
            return
        self._types(n, name)
        self._restrictions(n, name, constants, consts)
        self._shapes(n, name, constants)
        if op in t.plugin_ops:
            self._builtin_plugin(n, name)

    def _plugin(self, n, name: str) -> None:
        where = f"domain {n.domain!r}"
        if n.op_type in self.plugins:
            self.add("plugin", "info", f"custom op from {where}: needs the TensorRT plugin {n.op_type!r}, which you "
                     f"said is available (load its library before building)", name, n.op_type)
        elif n.domain == "ai.onnx.ml":
            self.add("unsupported-op", "error", "ai.onnx.ml operators are not imported by the ONNX-TensorRT parser; "
                     "run this part with onnxruntime or rewrite it with standard ops", name, n.op_type)
        else:
            self.add("plugin", "error", f"custom op from {where}: the parser will look for a TensorRT plugin named "
                     f"{n.op_type!r} (version '1'); register one (IPluginCreator) and pass `TensorRTConfig.plugins` {n.op_type}, or "
                     f"rewrite it with standard ops", name, n.op_type)

    def _builtin_plugin(self, n, name: str) -> None:
        plugin = self.table.plugin_ops[n.op_type]
        if n.op_type in self.plugins or plugin in self.plugins:
            self.add("plugin", "info", f"imported as the TensorRT plugin {plugin!r}, which you said is available "
                     f"(the engine runs only where libnvinfer_plugin is loaded)", name, n.op_type)
            return
        self.add("plugin", "warning", f"needs a plugin: the parser has no native layer for {n.op_type} and imports it "
                 f"as the TensorRT plugin {plugin!r} (libnvinfer_plugin); the engine builds and runs only where that "
                 f"library is loaded (not in the lean/dispatch runtimes). Pass `TensorRTConfig.plugins` "
                 f"{n.op_type} to say it is, or rewrite it with standard ops", name, n.op_type)

    def _shapes(self, n, name: str, constants: set[str]) -> None:
        """Control flow and ops whose import needs shapes fixed at build time."""
        import onnx

        op = n.op_type
        if op == "EyeLike" and n.input:
            dims = self.dims.get(n.input[0])
            if n.input[0] not in constants and dims is not None and any(d is None for d in dims):
                shown = "x".join("?" if d is None else str(d) for d in dims)
                self.add("shape", "error", f"input {n.input[0]!r} has shape {shown}, known only at run time: the "
                         f"parser builds EyeLike as a constant and rejects dynamically shaped inputs; give the input a "
                         f"static shape (or build the identity with Range/Equal)", name, op)
        if op == "If" and n.input and n.input[0] not in constants:  # a constant condition keeps one branch only
            branches = {a.name: a.g for a in n.attribute if a.type == onnx.AttributeProto.GRAPH}
            then, other = branches.get("then_branch"), branches.get("else_branch")
            if then is not None and other is not None:
                for i, (a, b) in enumerate(zip(then.output, other.output)):
                    ra, rb = self._rank(a), self._rank(b)
                    if ra is not None and rb is not None and ra != rb:
                        self.add("control-flow", "error", f"output {i} is rank {ra} in then_branch ({a.name!r}) and "
                                 f"rank {rb} in else_branch ({b.name!r}): TensorRT's conditional needs both branches "
                                 f"to give each output the same rank; reshape one branch's output", name, op)
        if op == "Loop":
            body = next((a.g for a in n.attribute if a.name == "body"), None)
            if body is None:
                return
            carried = max(len(n.input) - 2, 0)
            for out in body.output[1 + carried:]:
                dims = self._dims(out)
                if dims is not None and any(d is None for d in dims):
                    shown = "x".join("?" if d is None else str(d) for d in dims)
                    self.add("control-flow", "error", f"scan output {out.name!r} has per-iteration shape {shown}, "
                             f"not fixed at build time: TensorRT stacks scan outputs into one tensor and needs the "
                             f"same static shape every iteration; pad to a fixed size or carry it as a loop state",
                             name, op)

    def _rank(self, vi) -> int | None:
        t = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and t.HasField("shape"):
            return len(t.shape.dim)
        return self.ranks.get(vi.name)

    def _dims(self, vi) -> tuple[int | None, ...] | None:
        t = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and t.HasField("shape"):
            declared = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
            inferred = self.dims.get(vi.name)
            if inferred is not None and len(inferred) == len(declared):
                return tuple(a if a is not None else b for a, b in zip(declared, inferred))
            return declared
        return self.dims.get(vi.name)

    def _data_dependent(self, n, name: str) -> None:
        op = n.op_type
        if op in self.table.ops:
            self.add("data-dependent-shape", "warning", f"{op}'s output shape depends on the input values: TensorRT "
                     f"builds it, but output sizes are known only after execution (an output allocator is needed) "
                     f"and the engine reserves the worst case", name, op)
        else:
            self.add("data-dependent-shape", "error", f"{op}'s output shape depends on the input values and the "
                     f"parser does not import {op}; compute it outside the engine or rewrite with fixed shapes",
                     name, op)

    def _types(self, n, name: str) -> None:
        """The op's data input dtype against the types the matrix lists for it."""
        op = n.op_type
        allowed = self.table.ops[op]
        if op in ("Shape", "Size", "OneHot"):
            return
        if op == "Where":
            probe = n.input[1] if len(n.input) > 1 else ""
        elif op in ("Constant", "ConstantOfShape", "RandomNormal", "RandomUniform", "EyeLike"):
            probe = n.output[0] if n.output else ""
        else:
            probe = n.input[0] if n.input else ""
        dtype = self.types.get(probe)
        if dtype is None:
            return
        dtype = self.table.cast.get(dtype, dtype)  # what the parser will have turned it into
        if dtype not in allowed:
            self.add("dtype", "error", f"{op} on {dtype} input {probe!r}: TensorRT {self.table.version} runs {op} on "
                     f"{', '.join(sorted(allowed))} only; cast before it", name, op)

    def _restrictions(self, n, name: str, constants: set[str], consts: dict) -> None:
        import onnx

        op = n.op_type
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}

        def bad(message: str, severity: str = "error") -> None:
            self.add("attribute", severity, message, name, op)

        if op in _CONST_INPUT:
            idx, what = _CONST_INPUT[op]
            if len(n.input) > idx and n.input[idx] and n.input[idx] not in constants:
                bad(f"`{what}` (input {idx}) is computed at run time; TensorRT needs it as an initializer "
                    f"(constant-fold the graph, e.g. the simplify pass)")
        if op in ("AveragePool", "MaxPool", "LpPool"):
            dil = attrs.get("dilations")
            if dil and any(d != 1 for d in dil):
                bad(f"dilations {list(dil)}: TensorRT pools only without dilation")
            kernel = attrs.get("kernel_shape")
            if op != "LpPool" and kernel is not None and len(kernel) not in (2, 3):
                bad(f"{len(kernel)}D pooling: TensorRT pools in 2D or 3D only (reshape 1D data to 2D)")
        if op == "MaxPool" and len(n.output) > 1 and n.output[1]:
            bad("the Indices output is not supported; drop it (torch: return_indices=False)")
        if op == "LayerNormalization" and any(o for o in n.output[1:]):
            bad("only the first output (Y) is supported; Mean/InvStdDev outputs are used here")
        if op == "Constant":
            for a in ("sparse_value", "value_string", "value_strings"):
                if a in attrs:
                    bad(f"the `{a}` attribute is not supported")
        if op == "Dropout" and len(n.input) > 2 and n.input[2]:
            v = _const_value(n.input[2], consts)
            if v is None or bool(v.any()):
                bad("`training_mode` must be an initializer equal to False (export the model in eval mode)")
        if op in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2]:
            zp = n.input[2]
            v = _const_value(zp, consts)
            what = "y_zero_point" if op == "QuantizeLinear" else "x_zero_point"
            if v is None:
                bad(f"`{what}` is computed at run time; TensorRT needs a constant zero")
            elif v.size and (v != 0).any():
                bad(f"`{what}` is not zero: TensorRT quantizes symmetrically only (quantize with symmetric "
                    f"activations and weights)")
        if op == "QuantizeLinear" and n.output:
            out_t = self.types.get(n.output[0])
            if out_t is not None and out_t not in self.table.quantized:
                bad(f"quantizes to {out_t}; TensorRT {self.table.version} quantizes to "
                    f"{', '.join(sorted(self.table.quantized))} only (use signed INT8)")
        if op == "Resize":
            for key, (default, ok) in _RESIZE.items():
                value = attrs.get(key, default)
                value = value.decode() if isinstance(value, bytes) else value
                if value not in ok:
                    bad(f"{key}={value!r} is not supported (supported: {', '.join(sorted(ok))})")
            if attrs.get("antialias", 0):
                bad("antialias=1 is not supported")
        if op == "ScatterND":
            red = attrs.get("reduction", b"none")
            if (red.decode() if isinstance(red, bytes) else red) != "none":
                bad("`reduction` is not supported")
        if op == "TopK":
            if attrs.get("sorted", 1) != 1:
                bad("sorted=0 is not supported")
            if len(n.input) > 1:
                k = _const_value(n.input[1], consts)
                if k is None and n.input[1] not in constants:
                    self.add("data-dependent-shape", "warning", "K is computed at run time, so the output shape "
                             "depends on tensor values", name, op)
                elif k is not None and k.size and int(k.max()) >= 3840:
                    bad(f"K={int(k.max())}: TensorRT's TopK takes K < 3840")
        if op == "LSTM":
            if attrs.get("input_forget", 0) != 0:
                bad("input_forget must be 0")
            if attrs.get("layout", 0) != 0:
                bad("layout must be 0 (sequence-major)")
        if op in ("LSTM", "GRU", "RNN"):
            direction = attrs.get("direction", b"forward")
            acts = attrs.get("activations")
            if (direction.decode() if isinstance(direction, bytes) else direction) == "bidirectional" and acts:
                half = len(acts) // 2
                if list(acts[:half]) != list(acts[half:]):
                    bad("a bidirectional cell needs the same activations forward and backward")
        if op == "GridSample" and n.input:
            rank = self.ranks.get(n.input[0])
            if rank is not None and rank != 4:
                bad(f"input rank {rank}: TensorRT's GridSample takes 4D input only")
        if op in ("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike") and "seed" in attrs:
            bad("`seed` is ignored by TensorRT: the engine's random values differ from onnxruntime's", "warning")
        if self.table.major < 9 and op == "InstanceNormalization":
            for idx in (1, 2):
                if len(n.input) > idx and n.input[idx] not in constants:
                    bad("scale and B must be initializers")
                    break

    def _cast(self, graph) -> None:
        """Tensors the parser casts down, and initializers whose values the cast will clamp."""
        import onnx.numpy_helper

        t = self.table
        for src, dst in t.cast.items():
            names = sorted(n for n, d in self.types.items() if d == src)
            if not names:
                continue
            io = [v.name for v in (*graph.input, *graph.output) if self.types.get(v.name) == src]
            msg = f"{len(names)} {src} tensor(s) ({_names(names)}) are cast to {dst} by the parser"
            if io:
                msg += f"; the engine's inputs/outputs {_names(io)} are {dst}: feed and read {dst}"
            self.add("cast", "warning", msg, node=names[0])
            if src == "INT64":
                clamped = []
                for init in graph.initializer:
                    if init.data_type != onnx.TensorProto.INT64:
                        continue
                    v = onnx.numpy_helper.to_array(init)
                    out = v[((v < _INT32_MIN) | (v > _INT32_MAX)) & ~_isin(v, _INT64_SENTINELS)]
                    if out.size:
                        clamped.append(init.name)
                if clamped:
                    self.add("cast", "warning", f"INT64 initializer(s) {_names(clamped)} hold values outside the INT32 "
                             f"range; the parser clamps them, which changes what the model computes", node=clamped[0])


def _isin(v, values):
    import numpy as np

    return np.isin(v, np.array(values, dtype=v.dtype))


def _const_value(name: str, consts: dict):
    """The value of an initializer (None when ``name`` is not one)."""
    import onnx.numpy_helper

    t = consts.get(name)
    return onnx.numpy_helper.to_array(t) if t is not None else None


def _names(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def iter_lines(result: Readiness) -> Iterator[str]:
    for f in result.findings:
        yield f.line()
