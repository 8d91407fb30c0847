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
from typing import Callable, Mapping

from forgeml.converters import ImportOptions
from forgeml.errors import ForgeError, InputError, PassError, TargetError
from forgeml.fileio import StagedDir, check_out_dir, write_bytes_atomic, write_json_atomic
from forgeml.ir import IRModel
from forgeml.passes import ForgePass, PassInputs
from forgeml.targets import TARGETS, Artifact, TargetContext
from forgeml.validation import InputSet, Runner
from forgeml.validation.inputs import check_inputs, fit_calibration, parity_inputs
from forgeml.validation.ort_runner import ort_runner_for_ir
from forgeml.validation.parity import ParityReport, StageParity, measure
from forgeml.validation.tolerances import Tolerance, profile_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToleranceOverrides:
    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None
    min_top1: float | None = None
    quantized: ToleranceOverrides | None = None  # only for profiles with no elementwise rule (fp16/int8/int4)

    def apply(self, tol: Tolerance) -> Tolerance:
        tol = tol.with_overrides(atol=self.atol, rtol=self.rtol, min_cosine=self.min_cosine,
                                 min_top1=self.min_top1)
        if self.quantized is not None and tol.atol is None:
            tol = self.quantized.apply(tol)
        return tol


@dataclass(frozen=True)
class PipelineConfig:
    targets: tuple[str, ...]
    passes: tuple[ForgePass, ...]
    import_options: ImportOptions = ImportOptions()
    parity_batches: int = 3  # seeded random batches besides the example inputs
    seed: int = 0
    user_inputs: tuple[InputSet, ...] = ()
    tolerance: ToleranceOverrides = ToleranceOverrides()
    quantize: str | None = None  # fp16 | int8 | int8-static | int4: passes and targets follow it
    calibration: tuple[InputSet, ...] = ()  # --calib: representative inputs, checked against the signature
    target_configs: Mapping[str, object] = field(default_factory=dict)  # target name → its Config instance
    command: str = ""
    localize: str = "auto"  # first divergence on a failing stage: auto (small graphs) | always | never
    latency: bool = True  # time each artifact's runner (median of a few runs) for the variants table


@dataclass
class StageEvent:
    """What the pipeline tells its caller (the CLI draws progress from these)."""

    name: str
    kind: str  # "converter" | "pass" | "target"
    status: str  # "start" | "done" | "failed"
    seconds: float = 0.0
    passed: bool | None = None
    message: str = ""


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
        from forgeml.validation.report_html import save_report

        return save_report(self.manifest, Path(path))


def _forgeml_version() -> str:
    from forgeml import __version__

    return __version__


def run(resolved, config: PipelineConfig, out_dir: Path, *, force: bool = False,
        on_event: Callable[[StageEvent], None] = lambda e: None) -> Conversion:
    """Run the whole pipeline for a resolved source into ``out_dir`` (staged, then swapped in)."""
    unknown = [t for t in config.targets if t not in TARGETS]
    if unknown:
        raise InputError(f"unknown target(s) {unknown}; known targets: {', '.join(TARGETS)}")
    if not config.targets:
        raise InputError("no target given; choose from: " + ", ".join(TARGETS))
    if config.localize not in ("auto", "always", "never"):
        raise InputError(f"localize={config.localize!r}: choose auto, always or never")
    check_out_dir(out_dir, force)

    stages: list[dict] = []
    report = ParityReport()

    # --- converter ---
    conv = resolved.converter
    stage_name = f"{conv.name}->onnx"
    on_event(StageEvent(stage_name, "converter", "start"))
    t0 = time.perf_counter()
    opts = config.import_options
    if resolved.output_names and not opts.output_names:
        opts = replace(opts, output_names=resolved.output_names)
    converted = conv.convert(resolved.model, resolved.example_inputs, resolved.ref, opts)
    ir = converted.ir
    for user in config.user_inputs:
        check_inputs(user, ir.signature, "--inputs")
    calibration = fit_calibration(config.calibration, ir.signature, "--calib")
    input_sets = parity_inputs(converted.example_inputs, ir.signature, batches=config.parity_batches,
                               seed=config.seed, dynamic_batch=opts.dynamic_batch,
                               user=list(config.user_inputs))
    try:
        reference_outputs = [converted.reference(s) for s in input_sets]
    except ForgeError:
        raise
    except Exception as e:
        raise InputError(f"the source model failed on the parity inputs: {type(e).__name__}: {e}") from e
    output_names = ir.signature.output_names

    def check(candidate: Runner, precision: str) -> StageParity:
        tol = config.tolerance.apply(profile_for(precision))
        return measure(reference_outputs, candidate, input_sets, tol, reference=converted.reference_name,
                       output_names=output_names)

    parity = check(ort_runner_for_ir(ir.model), ir.precision)
    report.add(stage_name, parity)
    seconds = time.perf_counter() - t0
    stages.append({"name": stage_name, "kind": "converter", "route": ir.provenance.route,
                   "seconds": round(seconds, 3), "parity": parity.to_json()})
    converter_ir = ir  # the pre-pass graph: what localization compares later stages with, by tensor name
    first_failure = None if parity.passed else (0, ir.model)
    if config.latency:
        from forgeml.validation.latency import measure_latency

        stages[-1]["reference_latency"] = measure_latency(converted.reference, input_sets[0])
    on_event(StageEvent(stage_name, "converter", "done", seconds, parity.passed))

    # --- passes ---
    ran: list[str] = []
    float_ir = ir
    pass_inputs = PassInputs(converted.example_inputs, ir.signature, calibration, config.seed)
    warnings: list[str] = []
    for p in config.passes:
        p = p.bind(pass_inputs)
        on_event(StageEvent(p.name, "pass", "start"))
        t0 = time.perf_counter()
        before = ir.stats()
        try:
            result = p(ir.model)
        except PassError as e:
            raise PassError(f"{e} (passes that ran before it: {', '.join(ran) or 'none'})") from e
        except Exception as e:
            raise PassError(f"pass {p.name!r} failed after [{', '.join(ran) or 'none'}]: "
                            f"{type(e).__name__}: {e}") from e
        ir = ir.replace(model=result.model, precision=p.output_precision(ir.precision))
        if ir.precision == "fp32":
            float_ir = ir
        after = ir.stats()
        parity = check(ort_runner_for_ir(ir.model), ir.precision)
        report.add(p.name, parity)
        seconds = time.perf_counter() - t0
        stages.append({"name": p.name, "kind": "pass", "config": p.config_json(), "seconds": round(seconds, 3),
                       "changes": {"modified": result.modified, "nodes_before": before["nodes"],
                                   "nodes_after": after["nodes"], "bytes_before": before["bytes"],
                                   "bytes_after": after["bytes"]},
                       "parity": parity.to_json()})
        details = getattr(result, "details", None)
        if details:
            stages[-1]["details"] = details
            warnings += details.get("warnings", [])
        if not parity.passed and first_failure is None:
            first_failure = (len(stages) - 1, ir.model)
        on_event(StageEvent(p.name, "pass", "done", seconds, parity.passed))
        ran.append(p.name)

    # --- targets (each in the staging dir; one failing target does not stop the others) ---
    staged = StagedDir(out_dir)
    try:
        base_ctx = TargetContext(converted=converted, float_ir=float_ir, forgeml_version=_forgeml_version(),
                                 quantize=config.quantize, calibration=tuple(calibration),
                                 input_sets=tuple(input_sets))
        artifacts: dict[str, Artifact] = {}
        errors: dict[str, str] = {}
        for name in config.targets:
            target = TARGETS[name]
            ctx = replace(base_ctx, config=config.target_configs.get(name))
            on_event(StageEvent(name, "target", "start"))
            t0 = time.perf_counter()
            entry = {"name": name, "kind": "target"}
            try:
                artifact = target.build(ir, staged.path, ctx)
                runner, precision = target.runner(artifact, ctx)
                parity = check(runner, precision or ir.precision)
            except TargetError as e:
                errors[name] = str(e)
                entry.update(error=str(e), seconds=round(time.perf_counter() - t0, 3))
                stages.append(entry)
                on_event(StageEvent(name, "target", "failed", entry["seconds"], False, str(e)))
                continue
            artifacts[name] = artifact
            report.add(name, parity)
            seconds = time.perf_counter() - t0
            entry.update(artifact=artifact.path.name, runtime=artifact.runtime, seconds=round(seconds, 3),
                         parity=parity.to_json())
            if artifact.metadata:
                entry["metadata"] = artifact.metadata
            if config.latency:
                from forgeml.validation.latency import artifact_latency

                entry["latency"] = artifact_latency(runner, input_sets[0])
            stages.append(entry)
            if not parity.passed and first_failure is None and artifact.path.suffix == ".onnx":
                first_failure = (len(stages) - 1, artifact.path)
            on_event(StageEvent(name, "target", "done", seconds, parity.passed))

        ok = report.passed and not errors
        if first_failure is not None and config.localize != "never":
            from forgeml.validation.localize import localize_stage

            idx, candidate = first_failure
            tol = config.tolerance.apply(profile_for(stages[idx]["parity"]["profile"]))  # as the stage was judged
            stages[idx]["divergence"] = localize_stage(candidate, converted, converter_ir, input_sets[0], tol,
                                                       always=config.localize == "always")
        manifest = _manifest(ok, ir, stages, artifacts, staged.path, config, errors)
        if warnings:
            manifest["warnings"] = warnings
        from forgeml.validation.provenance import run_record

        manifest.update(run_record(resolved.ref, config))
        write_json_atomic(staged.path / "manifest.json", manifest)
        from forgeml.validation.report_md import render

        write_bytes_atomic(staged.path / "report.md", render(manifest).encode())
        from forgeml.validation.report_html import render as render_html

        write_bytes_atomic(staged.path / "report.html", render_html(manifest).encode())
        final = staged.commit()
    except BaseException:
        staged.discard()
        raise
    # Paths now point into the final directory.
    for a in artifacts.values():
        a.files = [final / f.name for f in a.files]
        a.path = final / a.path.name
    return Conversion(ok=ok, out_dir=final, manifest=manifest, artifacts=artifacts, parity=report, ir=ir,
                      errors=errors)


def _manifest(ok: bool, ir: IRModel, stages: list[dict], artifacts: dict[str, Artifact], root: Path,
              config: PipelineConfig, errors: dict[str, str]) -> dict:
    from forgeml.ir import sha256_file

    files = {}
    for name, a in artifacts.items():
        entry = {"path": a.path.name, "sha256": sha256_file(a.path), "bytes": a.path.stat().st_size}
        extra = [f for f in a.files if f != a.path]
        if extra:
            entry["extra_files"] = [{"path": f.name, "sha256": sha256_file(f), "bytes": f.stat().st_size}
                                    for f in extra]
        files[name] = entry
    opsets = {d: v for d, v in ir.model.opset_imports.items()}
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
    }
    if config.quantize:
        manifest["quantize"] = config.quantize
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

