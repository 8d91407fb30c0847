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
from typing import Callable

from forgeml.errors import ForgeError, InputError, Interrupted, PassError, first_line
from forgeml.fileio import (StagedDir, check_out_dir, output_error, output_oserror, write_bytes_atomic,
                            write_json_atomic)
from forgeml.ir import ConvertResult, IRModel, make_initializers_contiguous
from forgeml.passes import PassInputs
from forgeml.pipeline.config import PipelineConfig, ToleranceOverrides, build_config, check_config  # noqa: F401  (re-exported)
from forgeml.targets import TARGETS
from forgeml.targets.base import Artifact, TargetContext
from forgeml.runtime import InputSet, Runner
from forgeml.parity.inputs import check_inputs, fit_calibration, parity_inputs
from forgeml.runtime.ort import ort_runner_for_ir
from forgeml.parity.measure import ParityReport, StageParity, measure, run_reference
from forgeml.parity.tolerances import profile_for

log = logging.getLogger(__name__)


@dataclass
class StageEvent:
    """What the pipeline tells its caller (the CLI draws progress from these)."""

    name: str
    kind: str  # "converter" | "pass" | "target"
    status: str  # "start" | "done" | "failed"
    seconds: float = 0.0
    passed: bool | None = None
    message: str = ""
    progress: tuple[int, int] | None = None  # (done, total) with status "progress", from long loops


@dataclass
class Conversion:
    """The result of a run: what ``forgeml.convert()`` returns and the CLI prints."""

    ok: bool
    out_dir: Path
    manifest: dict
    artifacts: dict[str, Artifact]
    parity: ParityReport
    ir: IRModel
    errors: dict[str, str] = field(default_factory=dict)  # target name → why it failed

    @property
    def exit_code(self) -> int:
        if self.errors:
            return 2
        return 0 if self.ok else 1

    def save_report(self, path: str | Path) -> Path:
        """Write the report; the suffix picks the format (.html/.htm: HTML, anything else: markdown)."""
        from forgeml.report.html import save_report

        return save_report(self.manifest, Path(path))

    def _repr_html_(self) -> str:
        """Jupyter shows a run as its stage table (stage, output, metrics, verdict)."""
        from forgeml.report.html import notebook

        return notebook(self.manifest, str(self.out_dir))

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
    staged = None
    try:
        state = _import(resolved, config, on_event, plan)
        ir, float_ir = _apply_passes(state, state.converted.ir) if plan.run_passes else (state.converted.ir,) * 2
        staged = StagedDir(out_dir)
        artifacts, errors = _emit_targets(state, ir, float_ir, staged.path)
        ok = state.report.passed and not errors
        _localize_first_failure(state)
        manifest = _manifest(ok, ir, state.stages, artifacts, staged.path, config, errors)
        manifest["plan"] = plan.to_json()
        if state.warnings:
            manifest["warnings"] = state.warnings
        from forgeml.pipeline.provenance import run_record
        from forgeml.report.package import write_package

        manifest.update(run_record(resolved.ref, config))
        write_package(staged.path, manifest, ir.signature, state.converted.source_model)
        _write_reports(staged.path, manifest)  # manifest.json last: its presence says the rest is there
        final = staged.commit()  # the commit point: out_dir is absent, the old output, or all of this one
    except BaseException as e:
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
    return Conversion(ok=ok, out_dir=final, manifest=manifest, artifacts=artifacts, parity=state.report, ir=ir,
                      errors=errors)


@dataclass
class _RunState:
    """What one run has learned so far; every stage appends to ``stages`` and ``report``."""

    config: PipelineConfig
    on_event: Callable[[StageEvent], None]
    converted: ConvertResult
    input_sets: list[InputSet]
    reference_outputs: list[dict]
    calibration: tuple[InputSet, ...]
    stages: list[dict] = field(default_factory=list)
    report: ParityReport = field(default_factory=ParityReport)
    warnings: list[str] = field(default_factory=list)
    first_failure: tuple[int, object] | None = None  # (stage index, ONNX model or file) to localize
    stage: tuple[str, str] = ("", "")  # (name, kind) of the stage running now: what progress belongs to

    def start(self, name: str, kind: str) -> None:
        self.stage = (name, kind)
        self.on_event(StageEvent(name, kind, "start"))

    def tick(self, done: int, total: int) -> None:
        """(done, total) of the running stage's long loop, as a "progress" event."""
        self.on_event(StageEvent(*self.stage, "progress", progress=(done, total)))

    def check(self, candidate: Runner, precision: str) -> StageParity:
        """Judge a candidate against the source's outputs with the profile for ``precision``."""
        tol = self.config.tolerance.apply(profile_for(precision))
        return measure(self.reference_outputs, candidate, self.input_sets, tol,
                       reference=self.converted.reference_name,
                       output_names=self.converted.ir.signature.output_names, progress=self.tick)

    def record(self, name: str, entry: dict, parity: StageParity, onnx_candidate=None) -> None:
        self.report.add(name, parity)
        entry["parity"] = parity.to_json()
        self.warnings += [f"{name}: {r['warning']}" for r in entry["parity"].get("rows", []) if r.get("warning")]
        self.stages.append(entry)
        if not parity.passed and self.first_failure is None and onnx_candidate is not None:
            self.first_failure = (len(self.stages) - 1, onnx_candidate)


def _import(resolved, config: PipelineConfig, on_event, plan) -> _RunState:
    """The converter stage: import, check the user's inputs, compute the reference outputs once.
    Without ``plan.build_ir`` the converter only loads its reference (no export, no IR parity)."""
    conv = resolved.converter
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
    reference_outputs = run_reference(converted.reference, input_sets, "the source model",
                                      lambda d, t: on_event(StageEvent(stage_name, "converter", "progress", progress=(d, t))))
    state = _RunState(config, on_event, converted, input_sets, reference_outputs, tuple(calibration),
                      stage=(stage_name, "converter"))
    entry = {"name": stage_name, "kind": "converter", "route": ir.provenance.route}
    if plan.build_ir:
        parity = state.check(ort_runner_for_ir(ir.model), ir.precision)
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        state.record(stage_name, entry, parity, onnx_candidate=ir.model)
    else:  # nothing to compare: the reference is the source itself
        parity = None
        entry.update(seconds=round(time.perf_counter() - t0, 3), note=plan.reason)
        state.stages.append(entry)
    if config.latency:
        from forgeml.runtime.latency import measure_latency

        entry["reference_latency"] = measure_latency(converted.reference, input_sets[0])
    on_event(StageEvent(stage_name, "converter", "done", entry["seconds"], None if parity is None else parity.passed))
    return state


def _apply_passes(state: _RunState, ir: IRModel) -> tuple[IRModel, IRModel]:
    """Each pass in order, parity after each; returns the final IR and the last fp32 one."""
    ran: list[str] = []
    float_ir = ir
    pass_inputs = PassInputs(state.converted.example_inputs, ir.signature, state.calibration, state.config.seed,
                             progress=state.tick)
    for p in state.config.passes:
        p = p.bind(pass_inputs)
        state.start(p.name, "pass")
        t0 = time.perf_counter()
        before = ir.stats()
        try:
            result = p(ir.model)
        except PassError as e:
            raise PassError(f"{e} (passes that ran before it: {', '.join(ran) or 'none'})") from e
        except Exception as e:
            raise PassError(f"pass {p.name!r} failed after [{', '.join(ran) or 'none'}]: "
                            f"{first_line(e, with_type=True, root=True)}") from e
        ir = ir.replace(model=result.model, precision=p.output_precision(ir.precision))
        if ir.precision == "fp32":
            float_ir = ir
        after = ir.stats()
        parity = state.check(ort_runner_for_ir(ir.model), ir.precision)
        seconds = time.perf_counter() - t0
        entry = {"name": p.name, "kind": "pass", "config": p.config_json(), "seconds": round(seconds, 3),
                 "changes": {"modified": result.modified, "nodes_before": before["nodes"],
                             "nodes_after": after["nodes"], "bytes_before": before["bytes"],
                             "bytes_after": after["bytes"]}}
        details = getattr(result, "details", None)
        if details:
            entry["details"] = details
            state.warnings += details.get("warnings", [])
        state.record(p.name, entry, parity, onnx_candidate=ir.model)
        state.on_event(StageEvent(p.name, "pass", "done", seconds, parity.passed))
        ran.append(p.name)
    return ir, float_ir


def _emit_targets(state: _RunState, ir: IRModel, float_ir: IRModel,
                  out: Path) -> tuple[dict[str, Artifact], dict[str, str]]:
    """Every target into ``out``; a target that fails (TargetError or anything else) fails alone and
    is recorded, so the other artifacts and the reports are still written."""
    config = state.config
    base_ctx = TargetContext(converted=state.converted, float_ir=float_ir, forgeml_version=_forgeml_version(),
                             quantize=config.quantize, calibration=state.calibration,
                             input_sets=tuple(state.input_sets), progress=state.tick)
    artifacts: dict[str, Artifact] = {}
    errors: dict[str, str] = {}
    for name in config.targets:
        target = TARGETS[name]
        ctx = replace(base_ctx, config=config.target_configs.get(name))
        state.start(name, "target")
        t0 = time.perf_counter()
        entry = {"name": name, "kind": "target"}
        try:
            artifact = target.build(ir, out, ctx)
            runner, precision = target.runner(artifact, ctx)
            parity = state.check(runner, precision or ir.precision)
        except Exception as e:  # any failure fails this target only; the others still run
            if output_oserror(e) is not None:
                raise  # a full disk or read-only output ends the run: nothing partial is committed
            if isinstance(e, ForgeError):
                why = str(e)
            else:
                log.debug("target %s failed", name, exc_info=True)
                why = f"{name}: {first_line(e, with_type=True)} (--debug shows the traceback)"
            errors[name] = why
            entry.update(error=why, seconds=round(time.perf_counter() - t0, 3))
            state.stages.append(entry)
            state.on_event(StageEvent(name, "target", "failed", entry["seconds"], False, why))
            continue
        artifacts[name] = artifact
        seconds = time.perf_counter() - t0
        entry.update(artifact=artifact.path.relative_to(out).as_posix(), runtime=artifact.runtime, seconds=round(seconds, 3))
        if artifact.metadata:
            entry["metadata"] = artifact.metadata
        if config.latency:
            from forgeml.runtime.latency import artifact_latency

            entry["latency"] = artifact_latency(runner, state.input_sets[0])
        state.record(name, entry, parity,
                     onnx_candidate=artifact.path if artifact.path.suffix == ".onnx" else None)
        state.on_event(StageEvent(name, "target", "done", seconds, parity.passed))
    return artifacts, errors


def _localize_first_failure(state: _RunState) -> None:
    """Name the first node that diverges in the first failing ONNX stage (see validation/localize.py)."""
    if state.first_failure is None or state.config.localize == "never":
        return
    from forgeml.parity.localize import localize_stage

    idx, candidate = state.first_failure
    entry = state.stages[idx]
    tol = state.config.tolerance.apply(profile_for(entry["parity"]["profile"]))  # as the stage was judged
    entry["divergence"] = localize_stage(candidate, state.converted, state.converted.ir, state.input_sets[0], tol,
                                         always=state.config.localize == "always")


def _write_reports(out: Path, manifest: dict) -> None:
    from forgeml.report.html import render as render_html
    from forgeml.report.markdown import render

    write_bytes_atomic(out / "report.md", render(manifest).encode())
    write_bytes_atomic(out / "report.html", render_html(manifest).encode())
    write_json_atomic(out / "manifest.json", manifest)  # last: a staging dir with a manifest is whole


def _manifest(ok: bool, ir: IRModel, stages: list[dict], artifacts: dict[str, Artifact], root: Path,
              config: PipelineConfig, errors: dict[str, str]) -> dict:
    from forgeml.ir import sha256_file
    from forgeml.runtime.machine import detect as detect_machine

    files = {}
    for name, a in artifacts.items():
        entry = {"path": a.path.relative_to(root).as_posix(), "sha256": sha256_file(a.path), "bytes": a.path.stat().st_size}
        extra = [f for f in a.files if f != a.path]
        if extra:
            entry["extra_files"] = [{"path": f.relative_to(root).as_posix(), "sha256": sha256_file(f), "bytes": f.stat().st_size}
                                    for f in extra]
        files[name] = entry
    opsets = {d: v for d, v in ir.model.opset_imports.items()} if ir.model is not None else {}
    manifest = {
        "forgeml_version": _forgeml_version(),
        "ok": ok,
        "source": ir.provenance.to_json(),
        "signature": ir.signature.to_json(),
        "opset": opsets.get("", None),
        "opset_imports": opsets,
        "precision": ir.precision,
        "stages": stages,
        "artifacts": files,
        "tools": tool_versions(),
        "machine": detect_machine().to_json(),  # which CPU made the latency and int8 numbers
    }
    if config.quantize:
        manifest["quantize"] = config.quantize
        if config.quantize == "int8-static":  # which int8 each runtime was planned and given (precision.plan)
            from forgeml.passes.precision.plan import plans_for

            manifest["quantize_plans"] = plans_for(config.targets)
    if errors:
        manifest["errors"] = errors
    if config.command:
        manifest["command"] = config.command
    return manifest


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

