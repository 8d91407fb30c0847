"""Which stages a run needs, decided from the requested targets before anything is imported.

Targets that write from the source (GGUF from the checkpoint's tensors, safetensors from the source's
named weights) never read the ONNX IR. When no requested target reads it and the converter can give
its reference without exporting (``reference_only``), the export, its parity check and the passes
are skipped: on a 1 GB checkpoint they were 95% of the time and nearly all of the memory. The plan
is recorded in the manifest (``plan``) so the reports say what ran and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forgeml.errors import InputError
from forgeml.targets import TARGETS


@dataclass(frozen=True)
class StagePlan:
    build_ir: bool
    run_passes: bool
    reason: str  # one sentence: why the IR is (not) built
    ir_targets: tuple[str, ...] = ()  # requested targets that read the IR
    source_targets: tuple[str, ...] = ()  # requested targets that write from the source
    skipped: tuple[str, ...] = field(default=())  # stage names not run
    # Without the IR the reference loads in the checkpoint's own dtype (16-bit stays 16-bit) unless a
    # target asks for float32 (a gguf f32 file is judged elementwise, which a 16-bit reference cannot meet);
    # when no target reads the loaded model's weights (gguf streams them from the checkpoint), the
    # reference is "streamed": float32 arithmetic with each module's weights read from disk as it runs.
    # "none": `parity.outputs` is off, the converter gives the source's signature and provenance only
    # (``source_only``): no reference, no source framework imported.
    reference_dtype: str = "float32"  # float32 | checkpoint | streamed | none
    # Seeded random batches besides the example when the caller gave no `parity.batches`: 3, but 0 when
    # no target reads the IR (an LLM checkpoint written as GGUF: every parity position costs a forward of
    # the whole model in the source framework and again in llama.cpp, and the example's 64 fixed positions
    # of text decide the verdict, top-1 on the decided ones).
    parity_batches: int = 3

    def to_json(self) -> dict:
        return {"build_ir": self.build_ir, "run_passes": self.run_passes, "reason": self.reason,
                "ir_targets": list(self.ir_targets), "source_targets": list(self.source_targets),
                "skipped": list(self.skipped), "reference_dtype": self.reference_dtype,
                "parity_batches": self.parity_batches}


def reads_ir(target_name: str) -> bool:
    """A target reads the IR unless it says ``reads_ir = False`` (it writes from the source)."""
    return bool(getattr(TARGETS[target_name], "reads_ir", True))


def plan_stages(config, converter) -> StagePlan:
    """The stages ``config`` needs with ``converter``; refuses explicit passes that nothing would use."""
    import dataclasses

    plan = _plan(config, converter)
    batches = config.parity_batches
    if batches is None:
        batches = 3 if plan.build_ir else 0
    return dataclasses.replace(plan, parity_batches=batches)


def _plan(config, converter) -> StagePlan:
    ir_targets = tuple(t for t in config.targets if reads_ir(t))
    source_targets = tuple(t for t in config.targets if not reads_ir(t))
    pass_names = [p.name for p in config.passes] or list(config.deferred_passes)
    if not config.output_parity:
        return _without_outputs(config, converter, ir_targets, source_targets, pass_names)
    if ir_targets:
        return StagePlan(True, True, f"target(s) {', '.join(ir_targets)} read the ONNX IR", ir_targets,
                         source_targets)
    if config.passes_given and pass_names:
        raise InputError(f"`passes` {', '.join(pass_names)} change the ONNX IR, which no requested target "
                         f"({', '.join(source_targets)}) reads: they write from the source; drop `passes`, or "
                         "add a target that reads the IR (e.g. onnx)")
    if getattr(converter, "reference_only", None) is None:
        return StagePlan(True, True, f"no requested target reads the ONNX IR, but the {converter.name} converter "
                         "computes its reference only through the export", (), source_targets)
    skipped = (f"{converter.name}->onnx", *pass_names)
    wants_fp32 = [t for t in source_targets if _wants_float32(t, config)]
    if all(getattr(TARGETS[t], "needs_source_model", True) is False for t in source_targets):
        dtype = "streamed"  # no target reads the loaded model's weights: they may stay on disk
    else:
        dtype = "float32" if wants_fp32 else "checkpoint"
    return StagePlan(False, False, f"no requested target ({', '.join(source_targets)}) reads the ONNX IR: "
                     "the export and its passes are skipped; parity compares each artifact in its own runtime "
                     "with the source framework", (), source_targets, skipped, dtype)


def _without_outputs(config, converter, ir_targets, source_targets, pass_names) -> StagePlan:
    """`parity.outputs` off: only targets written from the source, from a converter that can describe
    the source without loading it."""
    if ir_targets:
        raise InputError(f"`parity.outputs` off applies to targets written from the source (gguf, safetensors); "
                         f"{', '.join(ir_targets)} read the ONNX IR, whose every stage is checked on outputs")
    if config.passes_given and pass_names:
        raise InputError(f"`passes` {', '.join(pass_names)} change the ONNX IR, which no requested target reads")
    if getattr(converter, "source_only", None) is None:
        raise InputError(f"`parity.outputs` off: the {converter.name} converter cannot describe its source without "
                         "loading it; only Hugging Face checkpoint directories convert without the reference")
    return StagePlan(False, False, f"no requested target ({', '.join(source_targets)}) reads the ONNX IR and "
                     "`parity.outputs` is off: no export, no reference; each target runs its own checks", (),
                     source_targets, (f"{converter.name}->onnx", *pass_names), "none")


def _wants_float32(target_name: str, config) -> bool:
    """A target asks for a float32 reference with ``needs_float32_reference(config, quantize_mode)``."""
    ask = getattr(TARGETS[target_name], "needs_float32_reference", None)
    return bool(ask and ask(config.target_configs.get(target_name), config.quantize))
