"""What one run is asked to do: ``PipelineConfig``, built by ``build_config`` from the API's
keywords or the CLI's flags, with the checks both need done once, before anything is imported."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Mapping, Sequence

from forgeml.converters import ImportOptions
from forgeml.errors import InputError
from forgeml.options import MlflowOptions, ParityOptions, QuantizeOptions
from forgeml.parity.tolerances import Tolerance
from forgeml.runtime import InputSet
from forgeml.targets import TARGETS

if TYPE_CHECKING:
    from forgeml.passes import ForgePass

# forgeml.passes.DEFAULT_PASSES, named here so that a run whose targets never read the IR builds no pass
# and never imports the passes (onnx_ir and sympy: over a second of a GGUF conversion's start-up).
DEFAULT_PASS_NAMES: tuple[str, ...] = ("check", "simplify", "cleanup")


@dataclass(frozen=True)
class ToleranceOverrides:
    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None
    min_top1: float | None = None
    min_centered_cosine: float | None = None
    quantized: ToleranceOverrides | None = None  # only for profiles with no elementwise rule (fp16/int8/int4)

    def apply(self, tol: Tolerance) -> Tolerance:
        tol = tol.with_overrides(atol=self.atol, rtol=self.rtol, min_cosine=self.min_cosine,
                                 min_top1=self.min_top1, min_centered_cosine=self.min_centered_cosine)
        if self.quantized is not None and tol.atol is None:
            tol = self.quantized.apply(tol)
        return tol


@dataclass(frozen=True)
class PipelineConfig:
    targets: tuple[str, ...]
    passes: tuple[ForgePass, ...]
    passes_given: bool = False  # the caller named `passes` (not the defaults): refused when no target reads the IR
    import_options: ImportOptions = ImportOptions()
    parity_batches: int | None = None  # seeded random batches besides the example (None: the plan's default)
    # with `quantize.mode`: fresh seeded samples (beyond the parity inputs) every fp16/int8/int4 stage is judged
    # on too, so top-1 and centered cosine are estimated on enough samples no precision pass chose anything on
    held_out_samples: int = 64
    seed: int = 0
    user_inputs: tuple[InputSet, ...] = ()
    tolerance: ToleranceOverrides = ToleranceOverrides()
    quantize: str | None = None  # fp16 | int8 | int8-static | int4: passes and targets follow it
    calibration: tuple[InputSet, ...] = ()  # `quantize.calibration`: representative inputs, checked against the signature
    target_configs: Mapping[str, object] = field(default_factory=dict)  # target name → its Config instance
    command: str = ""
    localize: str = "auto"  # first divergence on a failing stage: auto (small graphs) | always | never
    generate_tokens: int = 32  # greedy tokens per prompt for a KV-cache decoder's generation parity
    output_parity: bool = True  # `parity.outputs`: off, no reference is built (source-written targets only)
    latency: bool = True  # time each artifact's runner (median of a few runs) for the variants table
    mlflow: MlflowOptions | None = None  # log the committed package to MLflow (``forgeml.publish``)
    fail_on: str = "fail"  # the gate, recorded in the manifest: the reports' verdict is the exit code's
    # The default passes, not built: no requested target reads the IR. ``with_passes`` builds them
    # should the plan export the IR after all (a converter with no reference of its own).
    deferred_passes: tuple[str, ...] = ()

    def with_passes(self) -> PipelineConfig:
        from forgeml.passes import make_pass

        if not self.deferred_passes:
            return self
        return replace(self, passes=tuple(make_pass(p) for p in self.deferred_passes), deferred_passes=())


def build_config(*, targets: Sequence[str], passes: Sequence[str] | None = None,
                 quantize: QuantizeOptions | None = None, parity: ParityOptions = ParityOptions(),
                 import_options: ImportOptions = ImportOptions(), target_configs: Mapping[str, object] | None = None,
                 command: str = "", mlflow: MlflowOptions | None = None) -> PipelineConfig:
    """The one place that turns the caller's options (``forgeml.convert``'s option objects, which the CLI
    builds from its flags) into a ``PipelineConfig``: pass names into passes, ``quantize`` into its passes,
    budgets into tolerance overrides, with the checks both front ends need. Messages name options by
    their API path (`quantize.calibration`); the CLI shows its flags instead."""
    if parity.batches is not None and parity.batches < 0:
        raise InputError(f"`parity.batches` {parity.batches}: must be 0 or more")
    if parity.held_out_samples < 0:
        raise InputError(f"`parity.held_out_samples` {parity.held_out_samples}: must be 0 or more")
    if parity.fail_on not in ("fail", "warn"):
        raise InputError(f"`parity.fail_on` {parity.fail_on!r}: choose fail or warn")
    if parity.generate_tokens < 0:
        raise InputError(f"`parity.generate_tokens` {parity.generate_tokens}: must be 0 or more")
    q = quantize
    deferred = ()
    if passes is None and q is None and targets and all(t in TARGETS and not getattr(TARGETS[t], "reads_ir", True)
                                                        for t in targets):
        pass_objs, deferred = (), DEFAULT_PASS_NAMES
    else:
        from forgeml.passes import make_pass

        pass_objs = tuple(make_pass(p) for p in (DEFAULT_PASS_NAMES if passes is None else passes))
    if q is not None:
        from forgeml.passes.modes import quantize_pipeline

        if q.synthetic_calibration and q.calibration:
            raise InputError("`quantize.synthetic_calibration` replaces `quantize.calibration`; give one of them")
        if q.synthetic_calibration and q.mode == "int8-static" and "tflite" in targets:
            raise InputError("the tflite target calibrates its full-integer model on real data only: give "
                             "`quantize.calibration` (`quantize.synthetic_calibration` applies to the ONNX passes)")
        pass_objs += tuple(quantize_pipeline(q.mode, has_calibration=bool(q.calibration),
                                             calib_synthetic=q.synthetic_calibration,
                                             max_cosine_drop=q.max_cosine_drop, min_top1=q.min_top1,
                                             min_centered_cosine=q.min_centered_cosine,
                                             calibrate_method=q.calibrate_method,
                                             targets=tuple(targets)))
    stray = sorted(set(target_configs or {}) - set(targets))
    if stray:
        raise InputError(f"options for target(s) {stray} were given, but `targets` does not include them")
    config = PipelineConfig(
        targets=tuple(targets), passes=pass_objs, passes_given=passes is not None, import_options=import_options,
        parity_batches=parity.batches, user_inputs=tuple(parity.inputs),
        tolerance=ToleranceOverrides(atol=parity.atol, rtol=parity.rtol, quantized=ToleranceOverrides(
            min_cosine=None if q is None or q.max_cosine_drop is None else 1.0 - q.max_cosine_drop,
            min_top1=None if q is None else q.min_top1,
            min_centered_cosine=None if q is None else q.min_centered_cosine)),
        quantize=None if q is None else q.mode, calibration=() if q is None else tuple(q.calibration or ()),
        target_configs=dict(target_configs or {}), command=command, localize=parity.localize,
        generate_tokens=parity.generate_tokens, output_parity=parity.outputs, mlflow=mlflow,
        held_out_samples=parity.held_out_samples, fail_on=parity.fail_on, deferred_passes=deferred)
    check_config(config)
    if mlflow is not None:  # options and the extra checked now, not after the conversion's minutes
        from forgeml.publish.mlflow import check_options

        check_options(mlflow, config.targets)
    return config


def check_config(config: PipelineConfig) -> None:
    unknown = [t for t in config.targets if t not in TARGETS]
    if unknown:
        raise InputError(f"`targets`: unknown target(s) {unknown}; known targets: {', '.join(TARGETS)}")
    if not config.targets:
        raise InputError("no target given in `targets`; choose from: " + ", ".join(TARGETS))
    if config.localize not in ("auto", "always", "never"):
        raise InputError(f"`parity.localize` {config.localize!r}: choose auto, always or never")
