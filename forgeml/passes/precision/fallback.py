"""Accuracy-aware fallback: keep the nodes that cost the most accuracy in float until a budget holds.

The search works for any precision pass that can rebuild its model with some nodes left alone:

1. quantize everything the pass can, and judge the result against the float model it started from
   (onnxruntime on both, the same inputs) with the budget as a tolerance profile;
2. if the budget is missed, rank the candidate nodes by the error each *adds*: run both models with
   every candidate's inputs and outputs exposed, and take, per node, the relative error of its output
   minus the largest relative error already on its inputs (what flowed in from upstream); errors are
   relative to the input-dependent part of each tensor (minus its batch mean), so a node whose output
   is mostly a constant offset is not ranked harmless while its error drowns what varies;
3. keep the top-ranked nodes in float — 1, 2, 3, 4, 6, 8, 12, … of them — rebuilding and judging after
   each step, until the budget holds. Every step is recorded (kept nodes, metrics, what it bought);
4. if that runs out of steps, fall back by *role*: nodes of one op type and weight shape (the same
   layer in every repeated block: a transformer's FFN up-projections, say). When the error is spread
   thinly over many layers — quantization noise on well-behaved activations, no outlier to blame —
   no single node stands out and the per-node ranking keeps the wrong ones. Each role is measured by
   quantizing it alone (everything else float) and judging the end result; roles are kept in float
   from the most harmful on, until the budget holds (recorded as ``roles`` and ``phase: roles`` steps).

When the budget holds only with every candidate kept (nothing quantized: nothing gained) or the step
limit is reached, the search raises ``PassError``: a stage that cannot keep its promise fails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from forgeml.errors import PassError
from forgeml.runtime import InputSet
from forgeml.parity.measure import StageParity, measure
from forgeml.parity.tolerances import Tolerance

log = logging.getLogger(__name__)

Builder = Callable[[frozenset], object]
"""Rebuilds the low-precision model (a ModelProto) with the given node names left in float."""


@dataclass
class FallbackResult:
    proto: object  # the chosen onnx.ModelProto
    kept: list[str]  # nodes left in float, most costly first
    steps: list[dict] = field(default_factory=list)
    parity: StageParity | None = None
    ranking: list[dict] = field(default_factory=list)  # the costliest nodes and the error each adds
    roles: list[dict] = field(default_factory=list)  # per role: the budget's margin with only it quantized


def _session_runner(proto, exact: bool = False):
    """``exact``: Q/DQ computed in float as written (``plan.judged_exactly``), not by fused int8 kernels."""
    from forgeml.runtime.ort import ort_runner

    return ort_runner(proto.SerializeToString(), optimize=not exact)


class ProtoRuns:
    """How the search runs, probes and reads the models it compares: ModelProtos in one session each.
    ``passes/precision/streamed.IrRuns`` is the other kind (``onnx_ir`` models past 2 GB, weights mapped)."""

    @staticmethod
    def runner(model):
        return _session_runner(model)

    @staticmethod
    def probed(model, names):
        from forgeml.passes.graph_tools import with_probes

        return with_probes(model, names)

    @staticmethod
    def graph(model):
        return model


class ExactProtoRuns(ProtoRuns):
    """ModelProtos with onnxruntime's graph rewrites off: Q/DQ computed exactly as written, not by the fused
    CPU int8 kernels (for a plan judged on another runtime's arithmetic: ``plan.judged_exactly``)."""

    @staticmethod
    def runner(model):
        return _session_runner(model, exact=True)


Runs = type[ProtoRuns]
PROTOS: Runs = ProtoRuns
EXACT: Runs = ExactProtoRuns


def _outputs(run, inputs: Sequence[InputSet]) -> list[dict]:
    """The float model's outputs, its session closed before the low-precision one opens (past 2 GB the
    two would otherwise map both sets of weights at once)."""
    outputs = [run(b) for b in inputs]
    release = getattr(run, "release", None)
    if release is not None:
        release()
    return outputs


def summarize(parity: StageParity) -> dict:
    """The worst value of each metric over the outputs (what a budget step is judged by)."""
    out: dict = {"passed": parity.passed}
    for key in ("cosine", "centered_cosine", "top1"):
        values = [v for r in parity.rows if (v := r.metric(key)) is not None]
        if values:
            out[key] = round(float(min(values)), 6)
    failing = [r.problem or "" for r in parity.rows if not r.passed]
    if failing:
        out["problem"] = "; ".join(failing)
    return out


def judge_held_out(float_proto, low_proto, inputs: Sequence[InputSet], budget: Tolerance, *,
                   runs: Runs = PROTOS) -> StageParity:
    """The chosen model against the float one on inputs the search never saw (no node was picked on them)."""
    output_names = [o.name for o in runs.graph(float_proto).graph.output]
    reference = _outputs(runs.runner(float_proto), inputs)
    return measure(reference, runs.runner(low_proto), inputs, budget,
                   reference="float model (held-out inputs)", output_names=output_names)


def keep_schedule(n: int, max_steps: int) -> list[int]:
    """How many nodes to keep at each step: 1, 2, 3, 4, 6, 8, 12, 16, … below ``n``."""
    counts, k = [], 1
    while k < n and len(counts) < max_steps:
        counts.append(k)
        k = k + 1 if k < 4 else k + k // 2
    return counts


def _rel_errors(float_proto, low_proto, candidates: Sequence[str], io: dict, inputs: Sequence[InputSet],
                runs: Runs = PROTOS) -> list[dict]:
    names = sorted({t for n in candidates for group in io[n] for t in group})
    f_run = runs.runner(runs.probed(float_proto, names))
    q_run = runs.runner(runs.probed(low_proto, names))
    diff_sq: dict[str, float] = {}
    ref_sq: dict[str, float] = {}
    for batch in inputs:
        fo, qo = f_run(batch), q_run(batch)
        for t in names:
            if t not in fo or t not in qo:
                continue
            a, b = np.asarray(fo[t]), np.asarray(qo[t])
            if a.shape != b.shape or a.dtype.kind != "f" or b.dtype.kind != "f":
                continue
            a, b = a.astype(np.float64), b.astype(np.float64)
            diff_sq[t] = diff_sq.get(t, 0.0) + float(np.sum((a - b) ** 2))
            # against the input-dependent part (minus the batch mean) when there is a batch: a tensor that
            # is mostly a constant offset hides a quantization error that drowns what varies with the input
            signal = a - a.mean(axis=0, keepdims=True) if a.ndim and a.shape[0] > 1 else a
            ref_sq[t] = ref_sq.get(t, 0.0) + float(np.sum(signal * signal))

    def rel(t: str) -> float | None:
        if t not in diff_sq:
            return None
        return (diff_sq[t] / max(ref_sq[t], 1e-30)) ** 0.5

    ranking = []
    for n in candidates:
        ins, outs = io[n]
        out_err = [e for e in (rel(t) for t in outs) if e is not None]
        if not out_err:
            continue
        in_err = [e for e in (rel(t) for t in ins) if e is not None]
        added = max(out_err) - (max(in_err) if in_err else 0.0)
        ranking.append({"node": n, "added_error": round(float(added), 6),
                        "output_error": round(float(max(out_err)), 6)})
    ranking.sort(key=lambda r: r["added_error"], reverse=True)
    return ranking


def roles_of(float_proto, candidates: Sequence[str]) -> dict[str, list[str]]:
    """Candidates grouped by role: op type and the shape of the constant weight (graph order kept)."""
    inits = {t.name: tuple(t.dims) for t in float_proto.graph.initializer}
    wanted = set(candidates)
    out: dict[str, list[str]] = {}
    for n in float_proto.graph.node:
        if n.name not in wanted:
            continue
        shape = next((inits[i] for i in n.input if i in inits and len(inits[i]) >= 2), None)
        key = f"{n.op_type}{list(shape) if shape is not None else ''}"
        out.setdefault(key, []).append(n.name)
    return out


def margin(summary: dict, budget: Tolerance) -> float:
    """How far a judged model is above the budget (negative: below), on the worst of its metrics."""
    pairs = (("cosine", budget.min_cosine), ("centered_cosine", budget.min_centered_cosine), ("top1", budget.min_top1))
    gaps = [summary[k] - t for k, t in pairs if t is not None and k in summary]
    return round(float(min(gaps)), 6) if gaps else 0.0


def _by_role(build: Builder, judge, float_proto, candidates: Sequence[str], budget: Tolerance, steps: list,
             max_steps: int) -> FallbackResult | None:
    """Phase 4 of the module doc: whole roles kept in float, most harmful first; None if that fails too."""
    groups = roles_of(float_proto, candidates)
    if len(groups) < 2:
        return None
    everyone = frozenset(candidates)
    measured = []
    for key, nodes in groups.items():
        alone = summarize(judge(build(everyone - frozenset(nodes))))
        measured.append({"role": key, "nodes": len(nodes), "margin": margin(alone, budget),
                         **{k: v for k, v in alone.items() if k != "problem"}})
    measured.sort(key=lambda r: r["margin"])
    kept: list[str] = []
    for r in measured[:-1][:max_steps]:  # keeping every role would quantize nothing
        kept += groups[r["role"]]
        proto = build(frozenset(kept))
        parity = judge(proto)
        steps.append({"kept": len(kept), "phase": "roles", "added_role": r["role"], **summarize(parity)})
        if parity.passed:
            return FallbackResult(proto, kept, steps, parity, roles=measured)
    return None


def search(build: Builder, float_proto, candidates: Sequence[str], inputs: Sequence[InputSet],
           budget: Tolerance, *, what: str, max_steps: int = 10, enabled: bool = True,
           progress: Callable[[int, int], None] | None = None, runs: Runs = PROTOS) -> FallbackResult:
    """Build the low-precision model and, if it misses ``budget``, keep costly nodes in float;
    ``progress`` hears (steps tried, steps planned) as the search goes; ``runs`` says how models run."""
    from forgeml.passes.graph_tools import node_io

    float_graph = runs.graph(float_proto)
    output_names = [o.name for o in float_graph.graph.output]
    reference = _outputs(runs.runner(float_proto), inputs)

    def judge(proto) -> StageParity:
        return measure(reference, runs.runner(proto), inputs, budget, reference="float model",
                       output_names=output_names)

    proto = build(frozenset())
    parity = judge(proto)
    steps = [{"kept": 0, **summarize(parity)}]
    result = FallbackResult(proto, [], steps, parity)
    if parity.passed or not enabled:
        return result
    io = node_io(float_graph)
    ranking = _rel_errors(float_proto, proto, [c for c in candidates if c in io], io, inputs, runs)
    result.ranking = ranking[:20]
    order = [r["node"] for r in ranking]
    order += [c for c in candidates if c not in order]  # nodes whose error could not be measured go last
    log.info("%s misses its budget (%s); trying to keep nodes in float", what, steps[0].get("problem"))
    schedule = keep_schedule(len(order), max_steps)
    for i, k in enumerate(schedule):
        if progress is not None:
            progress(i, len(schedule))
        kept = order[:k]
        proto = build(frozenset(kept))
        parity = judge(proto)
        prev = steps[-1]
        step = {"kept": k, "added_nodes": order[prev["kept"]:k], **summarize(parity)}
        for key in ("cosine", "centered_cosine", "top1"):
            if key in step and key in prev:
                step[f"{key}_gain"] = round(step[key] - prev[key], 6)
        steps.append(step)
        if parity.passed:
            return FallbackResult(proto, kept, steps, parity, result.ranking)
    by_role = _by_role(build, judge, float_graph, order, budget, steps, max_steps)  # a proto (weights held out past 2 GB)
    if by_role is not None:
        by_role.ranking = result.ranking
        return by_role
    best = max(steps, key=lambda s: (s.get("cosine", 0.0), s.get("top1", 0.0)))
    raise PassError(
        f"{what}: the accuracy budget ({budget.describe()}, against the float model) is not met even with "
        f"{max(s['kept'] for s in steps)} of {len(order)} quantizable nodes kept in float (best: cosine "
        f"{best.get('cosine')}, top-1 {best.get('top1')} with {best['kept']} kept); loosen it with "
        f"`quantize.max_cosine_drop`/`quantize.min_top1`, give representative `quantize.calibration` data, or choose a wider precision")
