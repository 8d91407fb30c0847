"""Runs converter → passes → targets, checks parity after each stage, collects the manifest.

Data flows one way: the converter makes an ``IRModel`` and a reference runner; each pass replaces the
``IRModel``; each target emits an artifact from the last one. Reference outputs are computed once, in
the source framework, and every stage is compared with them (never with the stage before it, so
errors cannot hide by accumulating in small steps).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from forgeml.errors import ForgeError, InputError, Interrupted, PassError, first_line
from forgeml.fileio import (StagedDir, check_out_dir, output_error, output_oserror, write_bytes_atomic,
                            write_json_atomic)
from forgeml.ir import ConvertResult, IRModel, make_initializers_contiguous, release_mappings
from forgeml.manifest import (ArtifactRecord, DivergenceRecord, FileRecord, LatencyRecord, MachineRecord, Manifest,
                              ParityRecord, PassChanges, PassDetails, SignatureRecord, SourceRecord, StagePlanRecord,
                              StageRecord)
from forgeml.pipeline.config import PipelineConfig, ToleranceOverrides, build_config, check_config  # noqa: F401  (re-exported)
from forgeml.targets import TARGETS
from forgeml.targets.base import Artifact, TargetContext
from forgeml.runtime import InputSet, Runner
from forgeml.parity.inputs import check_inputs, fit_calibration, parity_inputs
from forgeml.runtime.heartbeat import heartbeat
from forgeml.runtime.ort import ort_runner_for_ir
from forgeml.parity.measure import ParityReport, ParityRow, StageParity, measure, run_reference
from forgeml.parity.tolerances import profile_for
from forgeml.parity.generation import GenerationCheck, OwnsCache

if TYPE_CHECKING:
    from forgeml.passes import PassInputs
    from forgeml.publish.mlflow.log import Published

log = logging.getLogger(__name__)

# Precisions whose profiles judge statistics (cosine, centered cosine, top-1) instead of an elementwise
# bound: their stages are measured on the parity inputs plus ``PipelineConfig.held_out_samples`` fresh samples.
STATISTICAL_PRECISIONS = ("fp16", "int8", "int4")


@dataclass
class StageEvent:
    """What the pipeline tells its caller (the CLI draws progress from these)."""

    name: str
    kind: str  # "converter" | "pass" | "target" | "publish"
    status: str  # "start" | "done" | "failed"
    seconds: float = 0.0
    passed: bool | None = None
    message: str = ""
    # (done, total) with status "progress", from long loops; total 0: no count known, done is seconds elapsed
    progress: tuple[int, int] | None = None


@dataclass
class Conversion:
    """The result of a run: what ``forgeml.convert()`` returns and the CLI prints."""

    ok: bool
    out_dir: Path
    record: Manifest  # the manifest, typed; ``manifest`` is its JSON (what manifest.json holds)
    artifacts: dict[str, Artifact]
    parity: ParityReport
    ir: IRModel
    errors: dict[str, str] = field(default_factory=dict)  # target name → why it failed
    published: Published | None = None  # where the package went, when logged to MLflow

    @property
    def manifest(self) -> dict:
        """manifest.json's content, as written."""
        return self.record.to_json()

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this run, under the gate it was converted with (``parity.fail_on``)."""
        from forgeml.report.gating import exit_code

        return exit_code(self.record)

    def save_report(self, path: str | Path) -> Path:
        """Write the report; the suffix picks the format (.html/.htm: HTML, anything else: markdown)."""
        from forgeml.report.html import save_report

        return save_report(self.record, Path(path))

    def _repr_html_(self) -> str:
        """Jupyter shows a run as its stage table (stage, output, metrics, verdict)."""
        from forgeml.report.html import notebook

        return notebook(self.record, str(self.out_dir))

    def report(self) -> Path:
        """Open this run's report.html in the default browser; returns its path."""
        import webbrowser

        path = self.out_dir / "report.html"
        webbrowser.open(path.resolve().as_uri())
        return path


def _forgeml_version() -> str:
    from forgeml.version import __version__

    return __version__


def run(resolved, config: PipelineConfig, out_dir: Path, *, force: bool = False,
        on_event: Callable[[StageEvent], None] = lambda e: None) -> Conversion:
    """Run the whole pipeline for a resolved source into ``out_dir`` (staged, then swapped in)."""
    check_config(config)
    source_path = (resolved.model,) if isinstance(resolved.model, Path) else ()
    check_out_dir(out_dir, force, protect=source_path)
    from forgeml.pipeline.plan import plan_stages

    plan = plan_stages(config, resolved.converter)
    if plan.run_passes:
        config = config.with_passes()
    config = replace(config, parity_batches=plan.parity_batches)  # the default resolved: what ran is recorded
    staged = state = None
    try:
        state = _import(resolved, config, on_event, plan)
        if not plan.build_ir and _releasable(state):
            _release_reference(state)
        ir, float_ir = _apply_passes(state, state.converted.ir) if plan.run_passes else (state.converted.ir,) * 2
        variants = _runtime_variants(state, float_ir) if plan.run_passes else {}
        staged = StagedDir(out_dir)
        try:
            artifacts, errors = _emit_targets(state, ir, float_ir, staged.path, variants)
        finally:
            state.cancel_reference()  # every target failed before needing it, or the run is ending
        ok = state.report.passed and not errors
        _localize_first_failure(state)
        manifest = _manifest(ok, ir, state.stages, artifacts, staged.path, config, errors)
        manifest.plan = StagePlanRecord.from_json(plan.to_json())
        manifest.warnings = list(state.warnings)
        from forgeml.pipeline.provenance import record_provenance
        from forgeml.report.package import write_package

        record_provenance(manifest, resolved.ref, config, state.input_sets, state.held_out_sets)
        write_package(staged.path, manifest, ir.signature, state.converted.source_model)
        _write_reports(staged.path, manifest)  # manifest.json last: its presence says the rest is there
        final = staged.commit()  # the commit point: out_dir is absent, the old output, or all of this one
    except BaseException as e:
        if state is not None:
            state.cancel_reference()
        done = staged is not None and staged.committed
        if staged is not None:
            staged.discard()
        if isinstance(e, KeyboardInterrupt) and not isinstance(e, Interrupted):
            raise Interrupted(f"{out_dir} is complete" if done else f"nothing was written to {out_dir}") from None
        bad = None if done or isinstance(e, ForgeError) else output_oserror(e, denied=True)
        if bad is not None:
            raise output_error(out_dir, bad) from e
        raise
    for a in artifacts.values():  # paths now point into the final directory (targets may nest files)
        a.files = [final / f.relative_to(staged.path) for f in a.files]
        a.path = final / a.path.relative_to(staged.path)
    result = Conversion(ok=ok, out_dir=final, record=manifest, artifacts=artifacts, parity=state.report, ir=ir,
                        errors=errors)
    if config.mlflow is not None:  # after the commit: a failure to log loses nothing written
        result.published = _publish(final, config, on_event)
    return result


def _publish(out_dir: Path, config: PipelineConfig, on_event):
    """Log the committed package to MLflow, as a stage the caller sees ("publish" kind); a failure is
    the one ``PublishError`` line, raised after the event."""
    from forgeml.publish.mlflow import publish

    on_event(StageEvent("mlflow", "publish", "start"))
    t0 = time.perf_counter()
    try:
        published = publish(out_dir, config.mlflow)
    except KeyboardInterrupt:
        raise Interrupted(f"{out_dir} is complete; it was not logged to MLflow") from None
    except ForgeError as e:
        on_event(StageEvent("mlflow", "publish", "failed", round(time.perf_counter() - t0, 3), False, str(e)))
        raise
    on_event(StageEvent("mlflow", "publish", "done", round(time.perf_counter() - t0, 3), None))
    return published


@dataclass
class _RunState:
    """What one run has learned so far; every stage appends to ``stages`` and ``report``."""

    config: PipelineConfig
    on_event: Callable[[StageEvent], None]
    converted: ConvertResult
    input_sets: list[InputSet]
    reference_outputs: list[dict]
    calibration: tuple[InputSet, ...]
    stages: list[StageRecord] = field(default_factory=list)
    report: ParityReport = field(default_factory=ParityReport)
    warnings: list[str] = field(default_factory=list)
    first_failure: tuple[int, object] | None = None  # (stage index, ONNX model or file) to localize
    generation: GenerationCheck | None = None  # a KV-cache decoder: the source's greedy tokens
    # fresh seeded batches (and the source's outputs on them) that lower-precision stages are judged on too
    held_out_sets: list[InputSet] = field(default_factory=list)
    held_out_outputs: list[dict] = field(default_factory=list)
    stage: tuple[str, str] = ("", "")  # (name, kind) of the stage running now: what progress belongs to
    reference_job: object | None = None  # hf_child.ReferenceJob: reference outputs still being computed

    def await_reference(self) -> None:
        """The child's input sets and reference outputs, once a stage needs them (no-op without a child)."""
        job, self.reference_job = self.reference_job, None
        if job is None:
            return
        got = job.result()
        self.input_sets, self.reference_outputs = got.input_sets, got.outputs
        self.converted = replace(self.converted, reference_name=got.reference_name, example_inputs=got.input_sets[0])
        self.stages[0].notes.append(f"reference outputs: {got.seconds:.1f} s in a child process (peak RSS "
                                    f"{got.peak_rss_mib:.0f} MiB), overlapping the targets' writes")
        if self.config.latency:
            self.stages[0].reference_latency = LatencyRecord.from_json(
                {"note": "the reference streams its weights from disk in a child process: no latency measured"})

    def cancel_reference(self) -> None:
        job, self.reference_job = self.reference_job, None
        if job is not None:
            job.cancel()

    def start(self, name: str, kind: str) -> None:
        self.stage = (name, kind)
        self.on_event(StageEvent(name, kind, "start"))

    def tick(self, done: int, total: int) -> None:
        """(done, total) of the running stage's long loop, as a "progress" event."""
        self.on_event(StageEvent(*self.stage, "progress", progress=(done, total)))

    def check(self, candidate: Runner, precision: str) -> StageParity:
        """Judge a candidate against the source's outputs with the profile for ``precision``."""
        tol = self.config.tolerance.apply(profile_for(precision))
        if self.generation is not None and isinstance(candidate, OwnsCache):
            # llama.cpp keeps the KV cache inside itself: it cannot take the parity sets' past and positions,
            # so it is judged on what a decoder does, greedy tokens and each step's logits
            parity = StageParity(True, self.converted.reference_name, tol, rows=[], batches=0)
        else:
            sets, refs = self.input_sets, self.reference_outputs
            if precision in STATISTICAL_PRECISIONS and self.held_out_sets:  # its verdict rests on statistics
                sets, refs = sets + self.held_out_sets, refs + self.held_out_outputs
            parity = measure(refs, candidate, sets, tol,
                             reference=self.converted.reference_name,
                             output_names=self.converted.ir.signature.output_names, progress=self.tick)
        if self.generation is not None:  # a decoder is used as a loop: greedy tokens must follow the source's
            parity = self.generation.judge(parity, candidate, tol)
        return parity

    def record(self, name: str, entry: StageRecord, parity: StageParity, onnx_candidate=None) -> None:
        self.report.add(name, parity)
        entry.parity = ParityRecord.from_json(parity.to_json())
        self.warnings += [f"{name}: {r.warning}" for r in parity.rows if r.warning]
        self.stages.append(entry)
        if not parity.passed and self.first_failure is None and onnx_candidate is not None:
            self.first_failure = (len(self.stages) - 1, onnx_candidate)


def _import(resolved, config: PipelineConfig, on_event, plan) -> _RunState:
    """The converter stage: import, check the user's inputs, compute the reference outputs once.
    Without ``plan.build_ir`` the converter only loads its reference (no export, no IR parity)."""
    conv = resolved.converter
    if plan.reference_dtype == "none":
        return _describe_only(resolved, config, on_event, plan)
    if plan.reference_dtype == "streamed" and isinstance(resolved.model, Path) and hasattr(conv, "source_only"):
        return _reference_in_child(resolved, config, on_event, plan)
    stage_name = f"{conv.name}->onnx" if plan.build_ir else f"{conv.name} (reference only)"
    on_event(StageEvent(stage_name, "converter", "start"))
    t0 = time.perf_counter()
    opts = config.import_options
    if opts.input_specs and resolved.example_inputs is not None:
        raise InputError(f"`options.input_specs` is for sources without example inputs; {resolved.ref} brings its own "
                         f"({', '.join(sorted(resolved.example_inputs)) if isinstance(resolved.example_inputs, dict) else 'given in code'})")
    if resolved.output_names and not opts.output_names:
        opts = replace(opts, output_names=resolved.output_names)
    if plan.build_ir:
        converted = conv.convert(resolved.model, resolved.example_inputs, resolved.ref, opts)
        make_initializers_contiguous(converted.ir.model)  # the IR's own, before any pass or target sees it
    else:
        converted = conv.reference_only(resolved.model, resolved.example_inputs, resolved.ref,
                                        dtype=plan.reference_dtype)
    ir = converted.ir
    for user in config.user_inputs:
        check_inputs(user, ir.signature, "`parity.inputs`")
    user_sets = list(config.user_inputs)
    if resolved.example_inputs is None and user_sets and getattr(conv, "invents_examples", False):
        # The converter made its example up from the signature; the user's own inputs are ones the
        # model takes (an integer input may carry a sample rate or an axis): they replace it.
        converted = replace(converted, example_inputs=user_sets[0])
        user_sets = user_sets[1:]
    calibration = fit_calibration(config.calibration, ir.signature, "`quantize.calibration`")
    input_sets = parity_inputs(converted.example_inputs, ir.signature, batches=config.parity_batches,
                               seed=config.seed, dynamic_batch=opts.dynamic_batch, user=user_sets)
    from forgeml.runtime.latency import TimedRunner

    invented = resolved.example_inputs is None and getattr(conv, "invents_examples", False) and not config.user_inputs
    timed_reference = TimedRunner(converted.reference)  # a slow source's latency comes from its parity calls
    try:
        reference_outputs = run_reference(timed_reference, input_sets, "the source model",
                                          lambda d, t: on_event(StageEvent(stage_name, "converter", "progress",
                                                                           progress=(d, t))))
    except ForgeError as e:
        if not invented:
            raise
        raise InputError(f"{resolved.ref}: the source model fails on the inputs forgeml made up from its signature "
                         f"(random floats, integers from [0, 2)), so they are not inputs it takes: {e}; give real "
                         "ones with `parity.inputs`") from e
    held_out = []
    if plan.build_ir and config.held_out_samples > 0 and _judged_statistically(config):
        from forgeml.parity.inputs import held_out_inputs

        held_out = held_out_inputs(converted.example_inputs, ir.signature, samples=config.held_out_samples,
                                   seed=config.seed)
    held_out_outputs = run_reference(converted.reference, held_out, "the source model (held-out inputs)",
                                     lambda d, t: on_event(StageEvent(stage_name, "converter", "progress",
                                                                      progress=(d, t)))) if held_out else []
    release = getattr(converted.reference, "release", None)  # an onnxruntime reference holds the whole model;
    if release is not None:                                   # it reopens for latency or localize
        release()
    state = _RunState(config, on_event, converted, input_sets, reference_outputs, tuple(calibration),
                      stage=(stage_name, "converter"), held_out_sets=held_out, held_out_outputs=held_out_outputs)
    spec = converted.decoder or converted.seq2seq  # a decoder or an encoder-decoder: judged on generation too
    if spec is not None and plan.build_ir and config.generate_tokens > 0:
        kv = {t.name: t.dtype for t in ir.signature.inputs}.get(spec.past_name(0, "key"), "float32")
        state.generation = GenerationCheck.start(spec, config.generate_tokens, kv)
    entry = StageRecord(stage_name, "converter", route=ir.provenance.route)
    if plan.build_ir:
        parity = state.check(ort_runner_for_ir(ir.model), ir.precision)
        release_mappings(ir.model)
        entry.seconds = round(time.perf_counter() - t0, 3)
        state.record(stage_name, entry, parity, onnx_candidate=ir.model)
    else:  # nothing to compare: the reference is the source itself
        parity = None
        entry.seconds, entry.note = round(time.perf_counter() - t0, 3), plan.reason
        state.stages.append(entry)
    if config.latency:
        from forgeml.runtime.latency import artifact_latency

        entry.reference_latency = LatencyRecord.from_json(artifact_latency(timed_reference, input_sets[0]))
        if release is not None:
            release()
    on_event(StageEvent(stage_name, "converter", "done", entry.seconds, None if parity is None else parity.passed))
    return state


def _judged_statistically(config: PipelineConfig) -> bool:
    """Whether some stage will be judged by a statistical profile: a `quantize.mode` (its passes, or a target
    that quantizes by itself), or a pass whose output precision is fp16/int8/int4."""
    if config.quantize:
        return True
    precision = "fp32"
    for p in config.passes:
        precision = p.output_precision(precision)
        if precision in STATISTICAL_PRECISIONS:
            return True
    return False


def _describe_only(resolved, config: PipelineConfig, on_event, plan) -> _RunState:
    """`parity.outputs` off: the source described, not loaded (no reference, no inputs, nothing to compare)."""
    conv = resolved.converter
    stage_name = f"{conv.name} (not loaded)"
    on_event(StageEvent(stage_name, "converter", "start"))
    t0 = time.perf_counter()
    if config.user_inputs:
        raise InputError("`parity.inputs` are compared on outputs, which `parity.outputs` off does not compare")
    converted = conv.source_only(resolved.model, resolved.example_inputs, resolved.ref)
    state = _RunState(config, on_event, converted, [], [], (), stage=(stage_name, "converter"))
    entry = StageRecord(stage_name, "converter", route=converted.ir.provenance.route,
                        seconds=round(time.perf_counter() - t0, 3), note=plan.reason)
    state.stages.append(entry)
    on_event(StageEvent(stage_name, "converter", "done", entry.seconds, None))
    return state


def _reference_in_child(resolved, config: PipelineConfig, on_event, plan) -> _RunState:
    """The checkpoint described here (no torch); its reference outputs computed by a child process
    (``converters.hf_child``) while the targets write. ``_RunState.await_reference`` collects them."""
    from forgeml.converters.hf_child import start_reference

    conv = resolved.converter
    stage_name = f"{conv.name} (reference in a child process)"
    on_event(StageEvent(stage_name, "converter", "start"))
    t0 = time.perf_counter()
    # started first: its imports and forward overlap this process's hashing and writing
    job = start_reference(resolved.model, batches=config.parity_batches, seed=config.seed,
                          dynamic_batch=config.import_options.dynamic_batch, user_inputs=config.user_inputs)
    try:
        converted = conv.source_only(resolved.model, resolved.example_inputs, resolved.ref,
                                     route="not exported (reference only, streamed, in a child process)")
        for user in config.user_inputs:
            check_inputs(user, converted.ir.signature, "`parity.inputs`")
    except BaseException:
        job.cancel()
        raise
    state = _RunState(config, on_event, converted, [], [], (), stage=(stage_name, "converter"), reference_job=job)
    entry = StageRecord(stage_name, "converter", route=converted.ir.provenance.route,
                        seconds=round(time.perf_counter() - t0, 3), reference_released=True,
                        note=f"{plan.reason}; the reference runs in a child process while the targets write, so "
                             "its memory is returned before an artifact's runtime loads")
    state.stages.append(entry)
    on_event(StageEvent(stage_name, "converter", "done", entry.seconds, None))
    return state


def _releasable(state: _RunState) -> bool:
    """The reference model can go once its outputs are computed: every target writes from the checkpoint
    on disk (``needs_source_model = False``) and nothing else (no IR, no localization) runs it again."""
    return state.converted.checkpoint is not None and all(
        getattr(TARGETS[name], "needs_source_model", True) is False for name in state.config.targets)


def _release_reference(state: _RunState) -> None:
    """Drop the loaded source model (keeping its small config for the package's labels) and hand its
    memory back to the OS, so the artifact's runtime (llama.cpp mapping a GGUF as large as the model)
    never holds it beside its own copy."""
    import gc
    from types import SimpleNamespace

    from forgeml.runtime.machine import trim_heap

    config = getattr(state.converted.source_model, "config", None)
    state.converted = replace(state.converted, reference=None, weights=None,
                              source_model=SimpleNamespace(config=config) if config is not None else None)
    gc.collect()
    trim_heap()
    state.stages[0].reference_released = True


def _apply_passes(state: _RunState, ir: IRModel) -> tuple[IRModel, IRModel]:
    """Each pass in order, parity after each; returns the final IR and the last fp32 one."""
    ran: list[str] = []
    float_ir = ir
    for p in state.config.passes:
        ir = _run_pass(state, p, ir, ran)
        if ir.precision == "fp32":
            float_ir = ir
        ran.append(p.name)
    return ir, float_ir


def _pass_inputs(state: _RunState, ir: IRModel) -> PassInputs:
    from forgeml.passes import PassInputs  # lazily: a run with no passes never imports them

    return PassInputs(state.converted.example_inputs, ir.signature, state.calibration, state.config.seed,
                      progress=state.tick)


def _run_pass(state: _RunState, p, ir: IRModel, ran: list[str], *, name: str | None = None) -> IRModel:
    """One pass as one stage (``name`` when it is a runtime's own variant): run, measure, record."""
    name = name or p.name
    runtime = getattr(p.config, "runtime", None)  # int8-static: the runtime its Q/DQ is planned for
    from forgeml.passes.precision.plan import judged_exactly

    exact = judged_exactly(runtime)
    notes = ([f"int8 planned for {runtime}, made from the float IR; judged on onnxruntime (CPU) as a proxy for "
              "TensorRT with its graph rewrites off, so Q/DQ is computed exactly as written (TensorRT accumulates "
              "int8 products in int32; onnxruntime's fused CPU kernels would judge this CPU's saturation instead); "
              "the tensorrt stage runs the engine where TensorRT and a GPU are present"]
             if runtime == "tensorrt" else [])
    p = p.bind(_pass_inputs(state, ir))
    state.start(name, "pass")
    t0 = time.perf_counter()
    before = ir.stats()
    try:
        result = p(ir.model)
    except PassError as e:
        raise PassError(f"{e} (passes that ran before it: {', '.join(ran) or 'none'})") from e
    except Exception as e:
        raise PassError(f"pass {name!r} failed after [{', '.join(ran) or 'none'}]: "
                        f"{first_line(e, with_type=True, root=True)}") from e
    ir = ir.replace(model=result.model, precision=p.output_precision(ir.precision))
    after = ir.stats()
    release_mappings(ir.model)  # pages of mapped weights the pass read leave the RSS before a session maps them
    parity = state.check(ort_runner_for_ir(ir.model, optimize=not exact), ir.precision)
    seconds = time.perf_counter() - t0
    entry = StageRecord(name, "pass", config=p.config_json(), seconds=round(seconds, 3),
                        changes=PassChanges(result.modified, before["nodes"], after["nodes"], before["bytes"],
                                            after["bytes"]), notes=notes)
    details = getattr(result, "details", None)
    if details:
        entry.details = PassDetails.from_json(details)
        state.warnings += entry.details.warnings or []
    state.record(name, entry, parity, onnx_candidate=ir.model)
    state.on_event(StageEvent(name, "pass", "done", seconds, parity.passed))
    return ir


def _runtime_variants(state: _RunState, float_ir: IRModel) -> dict[str, IRModel]:
    """int8-static for each runtime whose needs differ from the IR's plan (``precision.plan.variant_runtimes``):
    the same pass, planned for that runtime, from the last fp32 IR, as a stage of its own judged like any
    pass (onnxruntime on this CPU: for TensorRT, a proxy). Returns runtime → its graph, for its targets."""
    config = state.config
    if config.quantize != "int8-static":
        return {}
    from forgeml.passes.precision.plan import variant_runtimes, variant_stage

    base = next((p for p in config.passes if p.name == "int8-static"), None)
    if base is None:
        return {}
    out = {}
    ran = [p.name for p in config.passes]
    for runtime in variant_runtimes(config.targets):
        p = type(base)(replace(base.config, runtime=runtime))
        out[runtime] = _run_pass(state, p, float_ir, ran, name=variant_stage(runtime))
    return out


def _emit_targets(state: _RunState, ir: IRModel, float_ir: IRModel, out: Path,
                  variants: dict[str, IRModel] | None = None) -> tuple[dict[str, Artifact], dict[str, str]]:
    """Every target into ``out``, each from the IR, or from its runtime's own variant when it has one
    (``variants``: runtime → graph); a target that fails (TargetError or anything else) fails alone and
    is recorded, so the other artifacts and the reports are still written."""
    from forgeml.runtime.latency import TimedRunner

    if variants:  # only then: importing forgeml.passes loads onnx_ir, which a source-written target never needs
        from forgeml.passes.precision.plan import TARGET_RUNTIMES, variant_stage

    config = state.config
    base_ctx = TargetContext(converted=state.converted, float_ir=float_ir, forgeml_version=_forgeml_version(),
                             quantize=config.quantize, calibration=state.calibration,
                             input_sets=tuple(state.input_sets), progress=state.tick,
                             outputs_compared=config.output_parity)
    artifacts: dict[str, Artifact] = {}
    errors: dict[str, str] = {}
    for name in config.targets:
        target = TARGETS[name]
        ctx = replace(base_ctx, config=config.target_configs.get(name))
        state.start(name, "target")
        t0 = time.perf_counter()
        entry = StageRecord(name, "target")
        runtime = TARGET_RUNTIMES.get(name) if variants else None
        graph = variants.get(runtime, ir) if variants else ir
        if graph is not ir:
            entry.notes = [f"built from the {variant_stage(runtime)} stage's graph (int8 planned for {runtime})"]
        try:
            artifact = target.build(graph, out, ctx)
            if graph.model is not None:
                release_mappings(graph.model)  # what the build read of mapped weights, before the artifact's session
            if not config.output_parity:  # the target's own checks ran inside build(); nothing to compare with
                parity = None
            else:
                state.await_reference()
                ctx = replace(ctx, input_sets=tuple(state.input_sets))
                runner, precision = target.runner(artifact, ctx)
                runner = TimedRunner(runner) if config.latency else runner
                parity = state.check(runner, precision or graph.precision)
                parity = _noise_floor(state, target, artifact, ctx, parity)
                parity = _genai_check(state, artifact, parity, precision or graph.precision)
        except Exception as e:  # any failure fails this target only; the others still run
            if output_oserror(e) is not None:
                raise  # a full disk or read-only output ends the run: nothing partial is committed
            if isinstance(e, ForgeError):
                why = str(e)
            else:
                log.debug("target %s failed", name, exc_info=True)
                why = f"{name}: {first_line(e, with_type=True)} (--debug shows the traceback)"
            errors[name] = why
            entry.error, entry.seconds = why, round(time.perf_counter() - t0, 3)
            state.stages.append(entry)
            state.on_event(StageEvent(name, "target", "failed", entry.seconds, False, why))
            continue
        artifacts[name] = artifact
        seconds = time.perf_counter() - t0
        entry.artifact, entry.runtime = artifact.path.relative_to(out).as_posix(), artifact.runtime
        entry.seconds = round(seconds, 3)
        entry.metadata = artifact.metadata or None
        if parity is None:
            entry.note = "outputs not compared (`parity.outputs` off): only the target's own checks ran"
            state.stages.append(entry)
            state.on_event(StageEvent(name, "target", "done", seconds, None))
            continue
        if config.latency:
            from forgeml.runtime.latency import artifact_latency

            entry.latency = LatencyRecord.from_json(artifact_latency(runner, state.input_sets[0]))
        state.record(name, entry, parity,
                     onnx_candidate=artifact.path if artifact.path.suffix == ".onnx" else None)
        state.on_event(StageEvent(name, "target", "done", seconds, parity.passed))
    return artifacts, errors


def _noise_floor(state: _RunState, target, artifact: Artifact, ctx: TargetContext, parity):
    """A quantized file that fails on cosine alone with top-1 undecided: run the source once more on the
    file's rounded weights and re-judge against that floor (``forgeml.parity.floor``)."""
    from forgeml.parity.floor import judge_with_floor, needs_floor

    checkpoint = state.converted.checkpoint
    if not needs_floor(parity) or checkpoint is None or getattr(target, "rounding", None) is None:
        return parity
    rounding = target.rounding(artifact, ctx)
    if not rounding:
        return parity
    from forgeml.converters.hf_child import start_reference

    state.start("noise floor", "parity")
    t0 = time.perf_counter()
    with heartbeat(state.tick):
        floor = start_reference(checkpoint, user_inputs=tuple(state.input_sets), only=True,
                                rounding=rounding).result()
    state.on_event(StageEvent("noise floor", "parity", "done", time.perf_counter() - t0))
    return judge_with_floor(parity, state.reference_outputs, floor.outputs)


def _genai_check(state: _RunState, artifact: Artifact, parity, precision: str):
    """An artifact with onnxruntime-genai's config beside it also generates through genai's own
    Generator (when the package is installed): its row joins the stage's parity."""
    from forgeml.runtime import genai

    if state.generation is None or "genai_config" not in (artifact.metadata or {}):
        return parity
    if not genai.available():
        artifact.metadata["genai"] = "not checked: onnxruntime-genai is not installed (pip install 'forgeml[genai]')"
        return parity
    import dataclasses

    tol = state.config.tolerance.apply(profile_for(precision))
    try:
        decode = genai.genai_decode(artifact.path.parent)
    except ForgeError as e:
        row = ParityRow(output="generation (onnxruntime-genai)", passed=False, problem=str(e))
    else:
        row = state.generation.row(decode, tol, "onnxruntime-genai")
    artifact.metadata["genai"] = genai.version()
    return dataclasses.replace(parity, rows=[*parity.rows, row], passed=parity.passed and bool(row.passed))


def _localize_first_failure(state: _RunState) -> None:
    """Name the first node that diverges in the first failing ONNX stage (see validation/localize.py)."""
    if state.first_failure is None or state.config.localize == "never":
        return
    from forgeml.parity.localize import localize_stage

    idx, candidate = state.first_failure
    entry = state.stages[idx]
    tol = state.config.tolerance.apply(profile_for(entry.parity.profile))  # as the stage was judged
    state.start("localize", "parity")  # reruns two graphs with every value exposed: seconds to minutes
    t0 = time.perf_counter()
    with heartbeat(state.tick):
        entry.divergence = DivergenceRecord.from_json(
            localize_stage(candidate, state.converted, state.converted.ir, state.input_sets[0], tol,
                           always=state.config.localize == "always"))
    state.on_event(StageEvent("localize", "parity", "done", time.perf_counter() - t0))


def _write_reports(out: Path, manifest: Manifest) -> None:
    from forgeml.report.html import render as render_html
    from forgeml.report.markdown import render

    write_bytes_atomic(out / "report.md", render(manifest).encode())
    write_bytes_atomic(out / "report.html", render_html(manifest).encode())
    write_json_atomic(out / "manifest.json", manifest.to_json())  # last: a staging dir with a manifest is whole


def _manifest(ok: bool, ir: IRModel, stages: list[StageRecord], artifacts: dict[str, Artifact], root: Path,
              config: PipelineConfig, errors: dict[str, str]) -> Manifest:
    from forgeml.ir import sha256_file
    from forgeml.runtime.machine import detect as detect_machine

    def file(f: Path, cls=FileRecord, known: str | None = None):
        return cls(f.relative_to(root).as_posix(), known or sha256_file(f), f.stat().st_size)

    files = {}
    for name, a in artifacts.items():
        files[name] = file(a.path, ArtifactRecord, a.sha256)
        files[name].extra_files = [file(f) for f in a.files if f != a.path] or None
    opsets = {d: v for d, v in ir.model.opset_imports.items()} if ir.model is not None else {}
    plans = None
    if config.quantize == "int8-static":  # which int8 each runtime was planned and given (precision.plan)
        from forgeml.manifest import QuantPlanRecord
        from forgeml.passes.precision.plan import plans_for

        plans = [QuantPlanRecord.from_json(p.to_json()) for p in plans_for(config.targets)]
    return Manifest(
        forgeml_version=_forgeml_version(), ok=ok, source=SourceRecord.from_json(ir.provenance.to_json()),
        signature=SignatureRecord.from_json(ir.signature.to_json()), opset=opsets.get("", None),
        opset_imports=opsets, precision=ir.precision, stages=stages, artifacts=files, tools=tool_versions(),
        machine=MachineRecord.from_json(detect_machine().to_json()),  # which CPU made the latency and int8 numbers
        quantize=config.quantize or None, quantize_plans=plans, errors=dict(errors), fail_on=None if config.fail_on == "fail" else config.fail_on,
        command=config.command or None).keep_null("opset")


_TOOLS = ("onnx", "onnxruntime", "onnx-ir", "onnxscript", "onnxsim", "torch", "safetensors", "numpy",
          "tensorflow", "tf2onnx", "scikit-learn", "skl2onnx", "onnx2tf", "ai-edge-litert", "gguf", "transformers")
_MODULES = {"onnx-ir": "onnx_ir", "scikit-learn": "sklearn", "ai-edge-litert": "ai_edge_litert"}


def tool_versions() -> dict[str, str]:
    """Versions of the tools this process actually imported."""
    import sys
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in _TOOLS:
        if _MODULES.get(dist, dist) in sys.modules:
            try:
                out[dist] = version(dist)
            except PackageNotFoundError:
                pass
    return out

