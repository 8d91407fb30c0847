"""First divergence: the earliest node of a failing graph whose output leaves tolerance.

Every intermediate value of the candidate graph is exposed as a graph output (on a copy) and run once
in onnxruntime with its graph rewrites off, so values are the graph's as written. They are compared
with a reference in the candidate's topological order, and the first value beyond the stage's
tolerance names its node:

* ``onnx-by-name``: the pre-pass ONNX graph (the converter's output), run the same way, matched by
  tensor name. This is how a pass that broke a graph is found.
* ``torch-hooks``: the source torch module run with a forward hook on every submodule; each module's
  output is matched with the last node the dynamo exporter placed in that module's scope
  (``pkg.torch.onnx.name_scopes`` in the node's metadata). This is how an export that broke is found.

Each node is also mapped back to the source module it came from (module path, class and the line of
user code), read from the exporter's node metadata.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from forgeml.parity.metrics import OutputAccumulator
from forgeml.parity.tolerances import Tolerance

if TYPE_CHECKING:
    import onnx

    from forgeml.ir import ConvertResult
    from forgeml.runtime import InputSet

log = logging.getLogger(__name__)

AUTO_MAX_NODES = 5000
AUTO_MAX_BYTES = 512 * 2**20
_SCOPES = "pkg.torch.onnx.name_scopes"
_CLASSES = "pkg.torch.onnx.class_hierarchy"
_TRACE = "pkg.torch.onnx.stack_trace"


# --- graphs -------------------------------------------------------------------------------------

def _proto(model) -> onnx.ModelProto:
    import onnx
    import onnx_ir

    if isinstance(model, (str, Path)):
        from forgeml.formats import onnx_file

        return onnx_file.load(Path(model))
    if isinstance(model, onnx.ModelProto):
        return model
    from onnx_ir.external_data import load_to_model

    return onnx_ir.serde.serialize_model(load_to_model(model.clone()))  # weights inline (only small models get here)


def _meta(node) -> dict[str, str]:
    return {p.key: p.value for p in node.metadata_props}


def expose_all(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, list]:
    """A copy of ``proto`` whose graph outputs include every node output; and the nodes in order."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    have = {o.name for o in copy.graph.output}
    for node in copy.graph.node:
        for name in node.output:
            if name and name not in have:
                copy.graph.output.append(onnx.ValueInfoProto(name=name))
                have.add(name)
    return copy, list(proto.graph.node)


def run_all_values(proto: onnx.ModelProto, inputs: InputSet) -> dict[str, np.ndarray]:
    """Every value the graph computes on ``inputs`` (onnxruntime, graph optimizations off)."""
    import onnxruntime as ort

    from forgeml.runtime.ort import intra_op_threads

    exposed, _ = expose_all(proto)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    threads = intra_op_threads()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(exposed.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    feeds = {i.name: np.ascontiguousarray(inputs[i.name]) for i in sess.get_inputs()}
    return dict(zip(names, sess.run(names, feeds)))


def source_of(node, fallback=None) -> dict:
    """The source module a node came from, from the exporter's metadata (or ``fallback``'s)."""
    meta = _meta(node)
    if _SCOPES not in meta and fallback is not None:
        meta = _meta(fallback)
    out: dict = {}
    try:
        scopes = ast.literal_eval(meta[_SCOPES]) if _SCOPES in meta else None
        classes = ast.literal_eval(meta[_CLASSES]) if _CLASSES in meta else None
    except (ValueError, SyntaxError):
        scopes = classes = None
    if scopes:
        out["module"] = scopes[-2] if len(scopes) >= 2 else scopes[0]
        out["module"] = out["module"] or "(root module)"
        if classes and len(classes) >= 2:
            out["module_class"] = classes[-2]
        if classes:
            out["torch_op"] = classes[-1]
    trace = meta.get(_TRACE, "")
    user = [ln.strip() for ln in trace.splitlines() if ln.strip().startswith("File ")
            and "site-packages" not in ln]
    if user:
        idx = trace.splitlines().index(next(ln for ln in trace.splitlines() if ln.strip() == user[-1]))
        code = trace.splitlines()[idx + 1].strip() if idx + 1 < len(trace.splitlines()) else ""
        out["source_line"] = user[-1][5:].replace('"', "") + (f": {code}" if code else "")
    return out


# --- comparison ---------------------------------------------------------------------------------

def _judge(ref: np.ndarray, cand: np.ndarray, tol: Tolerance) -> dict:
    """One value's metrics against the stage's tolerance (class-score rules do not apply inside)."""
    inner = dataclasses.replace(tol, min_top1=None, min_centered_cosine=None)
    acc = OutputAccumulator("value")
    ref, cand = np.asarray(ref), np.asarray(cand)
    if ref.dtype.kind == "f" and cand.dtype.kind == "f" and ref.dtype != cand.dtype:
        ref, cand = ref.astype(np.float32), cand.astype(np.float32)
    acc.add(ref, cand, inner.rtol)
    row = acc.row(inner)
    keep = ("max_abs", "max_rel", "mean_abs", "cosine", "exact_match", "passed", "problem")
    return {k: row[k] for k in keep if k in row}


def _comparable(ref, cand) -> bool:
    """Same kind of numbers and the same number of elements (a pass may have reshaped a value)."""
    return (isinstance(ref, np.ndarray) and isinstance(cand, np.ndarray) and ref.size == cand.size
            and ref.size > 0 and (ref.dtype.kind == "f") == (cand.dtype.kind == "f"))


def _flat(ref, cand):
    return (ref, cand) if ref.shape == cand.shape else (ref.reshape(-1), cand.reshape(-1))


def _initializer_values(proto) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}


def _by_name(cand_proto, ref_proto, inputs, tol: Tolerance, converted: ConvertResult | None = None) -> dict:
    cand_vals = run_all_values(cand_proto, inputs)
    ref_vals = run_all_values(ref_proto, inputs)
    ref_producer = {o: n for n in ref_proto.graph.node for o in n.output}
    ref_consumers: dict[str, list] = {}
    for n in ref_proto.graph.node:
        for i in n.input:
            ref_consumers.setdefault(i, []).append(n)
    producer = {o: n for n in cand_proto.graph.node for o in n.output}
    matched: set[str] = set()
    compared = 0
    last_ok = None
    for node in cand_proto.graph.node:
        for name in node.output:
            if not name or name not in ref_vals or name not in cand_vals:
                continue
            if not _comparable(ref_vals[name], cand_vals[name]):
                continue
            compared += 1
            verdict = _judge(*_flat(ref_vals[name], cand_vals[name]), tol)
            if verdict["passed"]:
                matched.add(name)
                last_ok = name
                continue

            def src(n):
                # A node a pass created has no exporter metadata: borrow it from the reference node
                # that produced the same value, or that read the same weights.
                fallback = next((ref_producer[o] for o in n.output if o in ref_producer), None)
                if fallback is None:
                    fallback = next((c for i in n.input for c in ref_consumers.get(i, [])
                                     if i in ref_inits), None)
                return source_of(n, fallback)

            ref_inits = _initializer_values(ref_proto)
            suspects = _unmatched_ancestors(node, producer, matched, cand_proto)
            cand_inits = _initializer_values(cand_proto)
            origin, evidence = node, "the first value beyond tolerance"
            for s in suspects + [node]:
                changed = [i for i in s.input if i in cand_inits and i in ref_inits
                           and cand_inits[i].shape == ref_inits[i].shape
                           and not np.array_equal(cand_inits[i], ref_inits[i])]
                if changed:
                    origin = s
                    diff = float(np.max(np.abs(cand_inits[changed[0]].astype(np.float64)
                                               - ref_inits[changed[0]].astype(np.float64))))
                    evidence = (f"it reads weight {changed[0]!r}, which differs from the pre-pass graph's "
                                f"(max abs {diff:.3g})")
                    break
            out = _found("onnx-by-name", origin, name if origin is node else origin.output[0], verdict, compared,
                         last_ok, src(origin))
            out["evidence"] = evidence
            out["metrics_at"] = name
            out["detected_at"] = {"node": node.name, "op": node.op_type, "value": name, **src(node)}
            out["suspects"] = [{"node": s.name, "op": s.op_type, **src(s)} for s in suspects[:12]]
            if origin is node and converted is not None and out.get("module"):
                _add_conditioning(out, converted, out["module"], inputs)
            return out
    return {"found": False, "method": "onnx-by-name", "compared": compared,
            "note": "every intermediate value that shares a name with the pre-pass graph is within tolerance"}


def _unmatched_ancestors(node, producer, matched: set[str], proto) -> list:
    """Nodes feeding ``node`` whose values could not be compared, back to the matched frontier."""
    seen: dict[int, object] = {}
    stack = [i for i in node.input if i]
    while stack:
        v = stack.pop()
        if v in matched or v not in producer:
            continue
        n = producer[v]
        if id(n) in seen:
            continue
        seen[id(n)] = n
        stack += [i for i in n.input if i]
    order = {id(n): k for k, n in enumerate(proto.graph.node)}
    return sorted(seen.values(), key=lambda n: order[id(n)])


def _torch_hooks(cand_proto, converted: ConvertResult, inputs, tol: Tolerance) -> dict:
    import torch

    module = converted.source_model
    if not isinstance(module, torch.nn.Module):
        return {"found": False, "method": "torch-hooks", "note": "the source is not a torch module"}
    captured: dict[str, np.ndarray] = {}
    handles = []

    def hook(path):
        def fn(_mod, _args, out):
            if path not in captured and isinstance(out, torch.Tensor):
                captured[path] = out.detach().cpu().numpy().copy()
        return fn

    for path, sub in module.named_modules():
        handles.append(sub.register_forward_hook(hook(path or "(root module)")))
    try:
        converted.reference(inputs)
    finally:
        for h in handles:
            h.remove()
    cand_vals = run_all_values(cand_proto, inputs)
    # The last node placed in each module's scope produces that module's output.
    last_in_scope: dict[str, object] = {}
    for node in cand_proto.graph.node:
        meta = _meta(node)
        if _SCOPES not in meta:
            continue
        try:
            scopes = ast.literal_eval(meta[_SCOPES])
        except (ValueError, SyntaxError):
            continue
        for s in scopes[:-1]:
            last_in_scope[s or "(root module)"] = node
    order = {id(n): i for i, n in enumerate(cand_proto.graph.node)}
    def depth(path: str) -> int:
        return -1 if path == "(root module)" else path.count(".")

    # In graph order; where one node ends several scopes (head's Gemm ends the root too), deepest first.
    pairs = sorted(((order[id(n)], path, n) for path, n in last_in_scope.items() if path in captured),
                   key=lambda t: (t[0], -depth(t[1])))
    compared, last_ok = 0, None
    for _, path, node in pairs:
        ref = captured[path]
        name = next((o for o in node.output if o in cand_vals and _comparable(ref, cand_vals[o])), None)
        if name is None:
            continue
        compared += 1
        verdict = _judge(*_flat(ref, cand_vals[name]), tol)
        if not verdict["passed"]:
            src = source_of(node)
            src["module"] = path
            cls = type(module.get_submodule("" if path == "(root module)" else path))
            src["module_class"] = f"{cls.__module__}.{cls.__qualname__}"
            out = _found("torch-hooks", node, name, verdict, compared, last_ok, src)
            _add_conditioning(out, converted, path, inputs)
            return out
        last_ok = name
    return {"found": False, "method": "torch-hooks", "compared": compared,
            "note": "every module output matched with a graph value is within tolerance"}


ROUNDING = 2.0 ** -23  # float32's relative rounding step (one unit in the last place at 1.0)
ILL_CONDITIONED_SHARE = 0.25  # rounding alone moves the output by at least this share of the divergence


def _add_conditioning(found: dict, converted: ConvertResult | None, path: str, inputs) -> None:
    """Tell an ill-conditioned model apart from a broken conversion: run the diverging source module
    in torch itself on its own input and on that input moved by float32 rounding (each element times
    1 ± 2**-23). When rounding alone moves the module's output by a good share of the divergence
    measured, the conversion computes what fp32 can compute there (huge pre-activations into a
    saturating or periodic function, a near-singular normalization): the model is ill-conditioned at
    that layer, and the report says so instead of blaming the layer. Never raises."""
    try:
        c = _rounding_sensitivity(converted, path, inputs)
    except Exception as e:  # diagnosis only
        log.debug("conditioning check failed", exc_info=True)
        c = {"note": f"not measured: {type(e).__name__}: {e}"[:300]}
    if c is None:
        return
    seen = found.get("metrics", {}).get("max_abs")
    if isinstance(seen, float) and "rounding_change" in c:
        c["divergence_max_abs"] = seen
        c["ill_conditioned"] = bool(seen > 0 and c["rounding_change"] >= ILL_CONDITIONED_SHARE * seen)
        if c["ill_conditioned"]:
            found["evidence"] = (
                f"ill-conditioned, not a broken conversion: moving module {path!r}'s input by float32 rounding "
                f"(relative 2^-23; its inputs reach {c['input_max_abs']:.3g}) changes its output by "
                f"{c['rounding_change']:.3g} in the source framework itself, against a divergence of {seen:.3g}")
    found["conditioning"] = c


def _rounding_sensitivity(converted: ConvertResult | None, path: str, inputs) -> dict | None:
    import torch

    module = getattr(converted, "source_model", None)
    if not isinstance(module, torch.nn.Module):
        return None
    sub = module if path == "(root module)" else module.get_submodule(path)
    seen: list = []

    def grab(_mod, args, kwargs):
        if not seen:
            seen.append((args, kwargs))

    handle = sub.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        converted.reference(inputs)
    finally:
        handle.remove()
    if not seen:
        return {"note": "not measured: the module did not run on these inputs"}
    args, kwargs = seen[0]
    gen = torch.Generator().manual_seed(0)

    def nudge(v):
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            sign = torch.randint(0, 2, v.shape, generator=gen).to(v.dtype) * 2 - 1
            return v * (1 + sign * ROUNDING)
        return v

    def first_tensor(out):
        if isinstance(out, torch.Tensor):
            return out
        items = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else ()
        return next((t for t in items if isinstance(t, torch.Tensor)), None)

    floats = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor) and a.is_floating_point()]
    if not floats:
        return {"note": "not measured: the module takes no float input"}
    with torch.no_grad():
        base = first_tensor(sub(*args, **kwargs))
        moved = first_tensor(sub(*[nudge(a) for a in args], **{k: nudge(v) for k, v in kwargs.items()}))
    if base is None or moved is None or not base.is_floating_point():
        return {"note": "not measured: the module gives no float tensor"}
    change = float((moved.double() - base.double()).abs().max())
    return {"rounding_change": change, "input_max_abs": float(max(float(a.abs().max()) for a in floats))}


def _found(method, node, value, verdict, compared, last_ok, source) -> dict:
    out = {"found": True, "method": method, "node": node.name or "(unnamed)", "op": node.op_type,
           "domain": node.domain or "ai.onnx", "value": value, "compared": compared,
           "last_matching_value": last_ok, "metrics": verdict}
    out.update(source)
    return out


def localize_stage(candidate, converted: ConvertResult | None, reference_ir, inputs: InputSet,
                   tol: Tolerance, *, always: bool = False) -> dict:
    """Find the first diverging node of ``candidate`` (an onnx_ir model, ModelProto or .onnx path).

    Reference: ``reference_ir`` (the pre-pass IRModel) by tensor name when it differs from the
    candidate, else the source torch module through forward hooks. Never raises: a localization that
    cannot run says why in ``note``, since the stage's verdict stands without it.
    """
    try:
        cand = _proto(candidate)
        n_nodes = len(cand.graph.node)
        size = cand.ByteSize()
        if not always and (n_nodes > AUTO_MAX_NODES or size > AUTO_MAX_BYTES):
            return {"found": False, "note": f"skipped: {n_nodes} nodes, {size} bytes is over the automatic "
                                            "limit; rerun with `parity.localize`"}
        is_reference = reference_ir is not None and candidate is reference_ir.model
        if reference_ir is not None and not is_reference:
            result = _by_name(cand, _proto(reference_ir.model), inputs, tol, converted)
            result["reference"] = "the pre-pass ONNX graph (the converter's output), by tensor name"
            if result["found"] or result["compared"] or converted is None:
                return result
        if converted is not None and converted.source_model is not None:
            import importlib.util

            if importlib.util.find_spec("torch") is not None:
                result = _torch_hooks(cand, converted, inputs, tol)
                result["reference"] = f"{converted.reference_name}: module outputs via forward hooks"
                return result
        return {"found": False, "note": "no reference to localize against (neither a pre-pass graph nor a "
                                        "torch source module)"}
    except Exception as e:  # localization is diagnosis: it must never turn a report into a crash
        log.debug("localization failed", exc_info=True)
        return {"found": False, "note": f"localization could not run: {type(e).__name__}: {e}"}
