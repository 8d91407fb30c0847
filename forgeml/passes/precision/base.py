"""The base of the precision passes (fp16, int8, int4): budget, inputs, fallback plumbing.

A precision pass rewrites the float model it receives with a library that wants a ``ModelProto``
(onnxruntime's quantizers, the float16 converter), judges the result against that float model on
the pipeline's inputs with an accuracy budget, and keeps the costliest nodes in float until the
budget holds (``forgeml.passes.precision.fallback``). Scratch files live in a private temporary directory.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from forgeml.errors import PassError
from forgeml.passes.base import DetailedPassResult, ForgePass, PassInputs, from_proto, to_proto
from forgeml.runtime import InputSet
from forgeml.parity.tolerances import BUDGETS, Tolerance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetConfig:
    """Accuracy budget against the float model; ``None`` takes the precision's tolerance profile."""

    min_cosine: float | None = None
    min_centered_cosine: float | None = None
    min_top1: float | None = None
    fallback: bool = True  # keep costly nodes in float when the budget is missed
    max_fallback_steps: int = 10
    budget_samples: int = 64  # samples the budget is judged on (calibration data first), in the model's batches
    held_out: bool = True  # judge the chosen model again on inputs the fallback never picked nodes on


class PrecisionPass(ForgePass):
    """Subclasses set ``precision`` and implement ``candidates`` and ``build``."""

    precision: ClassVar[str]
    _inputs: PassInputs | None = None

    # --- what subclasses provide ---
    def prepare(self, proto):
        """Rewrites that make the model quantizable: named nodes always, and Gemm as MatMul + Add when the
        pass's config has ``gemm_to_matmul`` set (the integer kernels and block quantizers take MatMul only)."""
        from forgeml.passes.graph_tools import gemm_to_matmul, named

        proto = named(proto)
        if getattr(self.config, "gemm_to_matmul", False):
            proto, _ = gemm_to_matmul(proto)
            proto = named(proto)
        return proto

    def candidates(self, proto) -> list[str]:
        raise NotImplementedError

    def no_candidates(self) -> str:
        return "the model has nothing this pass can convert"

    def build(self, proto, exclude: frozenset, scratch: Path):
        """The converted ModelProto with the ``exclude`` nodes left in float."""
        raise NotImplementedError

    def settings(self) -> dict:
        """Settings chosen at run time (CPU-dependent ones), recorded in the manifest."""
        return {}

    def warnings(self) -> list[str]:
        return []

    # --- shared ---
    def bind(self, inputs: PassInputs) -> PrecisionPass:
        bound = copy.copy(self)
        bound._inputs = inputs
        return bound

    def output_precision(self, precision: str) -> str:
        return self.precision

    def budget(self) -> Tolerance:
        base = BUDGETS[self.precision]
        b: BudgetConfig = self.config.budget
        return Tolerance(
            name=f"{self.name} budget", atol=None, rtol=base.rtol,
            min_cosine=base.min_cosine if b.min_cosine is None else b.min_cosine,
            min_centered_cosine=base.min_centered_cosine if b.min_centered_cosine is None else b.min_centered_cosine,
            min_top1=base.min_top1 if b.min_top1 is None else b.min_top1)

    def budget_batches(self) -> int:
        """Batches that hold ``budget_samples`` samples at the example's batch size (4 to 64).

        At least 4, like the pipeline's parity inputs (the example plus seeded random batches): a big
        example batch of real data alone would judge the pass on easier inputs than the pipeline does.
        """
        per = 1
        if self._inputs is not None and self._inputs.example:
            first = next(iter(self._inputs.example.values()))
            per = max(1, first.shape[0]) if getattr(first, "ndim", 0) else 1
        return max(4, min(64, -(-self.config.budget.budget_samples // per)))

    def budget_inputs(self, proto) -> list[InputSet]:
        """Calibration batches first, then the example and seeded random batches like it."""
        n = self.budget_batches()
        if self._inputs is None:
            return synthetic_from_graph(proto, n, seed=0)
        sets = list(self._inputs.calibration[:n])
        if len(sets) < n:
            sets += example_like(self._inputs, n - len(sets), seed_offset=1000)
        return sets

    def held_out_inputs(self, proto) -> list[InputSet]:
        """Seeded batches apart from every seed the budget inputs and the pipeline's parity use: the
        fallback chooses which nodes stay in float on ``budget_inputs``, so only these can say whether the
        budget (centered cosine: the input-dependent error included) holds beyond them."""
        from forgeml.parity.inputs import random_like

        n = max(4, self.budget_batches() // 2)
        if self._inputs is None:
            return synthetic_from_graph(proto, n, seed=7919)
        i = self._inputs
        return [random_like(i.example, i.signature, i.seed + 7000 + k) for k in range(n)]

    def call(self, model) -> DetailedPassResult:
        from forgeml.ir import is_large

        if is_large(model):  # past protobuf's limit: the streamed rewrites, weights held out of every proto
            from forgeml.passes.precision.streamed import call_large

            return call_large(self, model)
        proto = self.prepare(to_proto(model))
        candidates = self.candidates(proto)
        if not candidates:
            raise PassError(f"{self.name}: {self.no_candidates()}")
        from forgeml.passes.precision import fallback

        with tempfile.TemporaryDirectory(prefix="forgeml-pass-") as tmp:
            runs = fallback.EXACT if self.judged_exactly() else None
            return self.search(proto, proto, candidates, lambda exclude: self.build(proto, exclude, Path(tmp)), runs)

    def search(self, float_model, graph, candidates: list[str], build, runs=None) -> DetailedPassResult:
        """The budget and fallback over ``build(exclude)``; ``runs`` (``fallback.Runs``) says how models are
        run: ModelProtos by default, ``onnx_ir`` models with mapped weights past 2 GB (``graph`` is then the
        proto without weight data that names nodes and inputs)."""
        from forgeml.passes.precision import fallback

        runs = runs or fallback.PROTOS
        inputs = self.budget_inputs(graph)
        budget = self.budget()
        res = fallback.search(build, float_model, candidates, inputs, budget, what=self.name,
                              max_steps=self.config.budget.max_fallback_steps, enabled=self.config.budget.fallback,
                              progress=None if self._inputs is None else self._inputs.progress, runs=runs)
        held = self._judge_held_out(float_model, graph, res, budget, runs)
        details = {"settings": self.settings(), "candidates": len(candidates), "kept_in_float": res.kept,
                   "budget": budget.to_json(), "budget_batches": len(inputs), "steps": res.steps}
        if held is not None:
            details["held_out"] = held
        if res.ranking:
            details["sensitivity"] = res.ranking[:10]
        if res.roles:
            details["role_sensitivity"] = res.roles
        if self.warnings():
            details["warnings"] = self.warnings()
        out = from_proto(res.proto) if issubclass(runs, fallback.ProtoRuns) else res.proto
        out.graph.sort()  # converters append Casts/Q-DQ nodes at the end; keep the graph in topological order
        return DetailedPassResult(out, True, details)


    def judged_exactly(self) -> bool:
        """Whether this pass's result is judged with Q/DQ computed in float (``plan.judged_exactly``)."""
        return False

    def _judge_held_out(self, float_model, graph, res, budget: Tolerance, runs) -> dict | None:
        from forgeml.passes.precision import fallback

        if not self.config.budget.held_out:
            return None
        try:
            held = self.held_out_inputs(graph)
        except PassError as e:  # inputs that cannot be made up outside the pipeline: say so, judge nothing
            return {"skipped": str(e)}
        parity = fallback.judge_held_out(float_model, res.proto, held, budget, runs=runs)
        out = {"batches": len(held), **fallback.summarize(parity)}
        if not parity.passed:
            log.warning("%s: budget met on its selection inputs but not on %d held-out batches: %s", self.name,
                        len(held), out.get("problem"))
        return out


def example_like(inputs: PassInputs, n: int, *, seed_offset: int) -> list[InputSet]:
    """The example plus seeded random batches shaped like it (seeds apart from the parity inputs')."""
    from forgeml.parity.inputs import random_like

    sets = [dict(inputs.example)]
    for i in range(n - 1):
        sets.append(random_like(inputs.example, inputs.signature, inputs.seed + seed_offset + i))
    return sets[:n]


def synthetic_from_graph(proto, n: int, *, seed: int) -> list[InputSet]:
    """Inputs drawn from the graph's own input types, for a pass run outside the pipeline.

    Made by ``example_from_spec``, but stricter, on purpose: only float inputs with static shapes. An
    integer input (token ids) needs a valid range the graph does not state, and a guessed size for a
    dynamic dim could judge the budget on shapes the model never sees; those need ``bind(PassInputs(...))``.
    """
    from onnx import helper

    from forgeml.ir import TensorSpec
    from forgeml.parity.inputs import example_from_spec

    rng = np.random.default_rng(seed)
    inits = {t.name for t in proto.graph.initializer}
    specs = []
    for v in proto.graph.input:
        if v.name in inits:
            continue
        tt = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in tt.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if dtype.kind != "f" or any(d <= 0 for d in dims):
            raise PassError(f"input {v.name!r} ({dtype}, shape {dims}) cannot be made up: run this pass in the "
                            "pipeline or give it inputs with .bind(PassInputs(...))")
        specs.append(TensorSpec(v.name, tuple(dims), dtype.name))
    return [{s.name: example_from_spec(s, rng) for s in specs} for _ in range(n)]
