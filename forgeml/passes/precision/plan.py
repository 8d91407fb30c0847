"""Which int8 the static quantizer writes, decided by the runtime that will run it and the CPU.

One QDQ file cannot suit every runtime: onnxruntime's CPU kernels are fastest on uint8 asymmetric
activations (and, without VNNI, 7-bit weights so u8×s8 pairs do not saturate 16 bits), while TensorRT
imports Q/DQ only as *symmetric signed* int8 (zero points 0, INT8 type) and has no int32 bias
dequantization. The plan is recorded in the pass details so the manifest says which runtime a
quantized model was made for. A run with several targets plans the IR's pass for one runtime
(``runtime_for``) and gives each other runtime whose needs differ a variant stage of its own
(``variant_runtimes``, made by the pipeline); ``plans_for`` says which int8 each target gets from where.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

RUNTIMES = ("onnxruntime-cpu", "tensorrt")


@dataclass(frozen=True)
class QuantPlan:
    runtime: str  # one of RUNTIMES
    activation_type: str  # "uint8" | "int8"
    weight_type: str  # "int8"
    activation_symmetric: bool
    weight_symmetric: bool
    per_channel: bool
    reduce_range: bool
    quantize_bias: bool  # int32 bias Q/DQ (onnxruntime folds it; TensorRT cannot import it)
    cpu: str  # the ISA detected here (what the CPU plan was tuned for)
    why: str

    def to_json(self) -> dict:
        return asdict(self)


# Which runtime runs each target's int8 (targets that do not run an int8 ONNX graph are absent).
TARGET_RUNTIMES = {"onnx": "onnxruntime-cpu", "triton": "onnxruntime-cpu", "tensorrt": "tensorrt", "tflite": "tflite"}
QUANTIZES_ITSELF = ("tflite",)  # runtimes whose target makes its own int8 from the float IR (its converter's)


def runtime_for(targets) -> str:
    """The runtime the IR's int8-static pass is planned for: onnxruntime on this CPU when a target runs the
    IR there (onnx, triton) or none names a runtime, else TensorRT when it is among the targets. A runtime
    whose needs differ gets its own variant stage (``variant_runtimes``)."""
    runtimes = [TARGET_RUNTIMES[t] for t in tuple(targets or ()) if t in TARGET_RUNTIMES]
    if "onnxruntime-cpu" in runtimes or "tensorrt" not in runtimes:
        return "onnxruntime-cpu"
    return "tensorrt"


def variant_runtimes(targets) -> list[str]:
    """Runtimes among ``targets`` that need an int8-static graph of their own beside the IR's: they run a QDQ
    ONNX graph (not one their target quantizes itself) and their plan differs from the IR's."""
    chosen = int8_static_plan(runtime_for(targets))
    out = []
    for t in tuple(targets or ()):
        rt = TARGET_RUNTIMES.get(t)
        if rt is None or rt in QUANTIZES_ITSELF or rt == chosen.runtime or rt in out:
            continue
        if _kernel_choice(int8_static_plan(rt)) != _kernel_choice(chosen):
            out.append(rt)
    return out


def judged_exactly(runtime: str | None) -> bool:
    """Whether int8 planned for ``runtime`` is judged here with its Q/DQ computed in float (onnxruntime's graph
    rewrites off), not by onnxruntime's fused CPU int8 kernels. TensorRT multiplies int8 and accumulates in
    int32, exactly; onnxruntime's CPU kernels on AVX2 (no VNNI) form u8/s8 pair sums in 16 bits that saturate
    on symmetric s8 activations (tests/passes' MLP under an emulated AVX2 Zen 3: cosine 0.9937 and a failed
    budget with the fused kernels, > 0.999 computed exactly), so the fused kernels would judge this CPU, not
    the plan."""
    return runtime == "tensorrt"


def variant_stage(runtime: str) -> str:
    """The stage name of a runtime's own int8-static variant (one line in every table)."""
    return f"int8-static[{runtime}]"


def int8_static_plan(runtime: str = "onnxruntime-cpu", *, per_channel: bool | None = None,
                     reduce_range: bool | None = None, activation_type: str | None = None) -> QuantPlan:
    """The plan for ``runtime``; explicit arguments override the CPU's choices (not TensorRT's needs)."""
    from forgeml.passes.precision.cpu_features import int8_settings

    s = int8_settings()
    if runtime == "tensorrt":
        return QuantPlan("tensorrt", "int8", "int8", True, True, True if per_channel is None else per_channel,
                         False, False, s.isa,
                         "TensorRT imports Q/DQ as symmetric signed int8 only (zero points 0); per-channel weights, "
                         "full range, no int32 bias Q/DQ")
    if runtime != "onnxruntime-cpu":
        raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    act = s.activation_type if activation_type is None else activation_type
    return QuantPlan("onnxruntime-cpu", act, "int8", act == "int8", True,
                     s.per_channel if per_channel is None else per_channel,
                     s.reduce_range if reduce_range is None else reduce_range, True, s.isa, s.why)


def tflite_plan() -> QuantPlan:
    """What TFLite's converter writes for full-integer int8 (the tflite target quantizes by itself)."""
    from forgeml.passes.precision.cpu_features import int8_settings

    return QuantPlan("tflite", "int8", "int8", False, True, True, False, True, int8_settings().isa,
                     "TFLite's converter: int8 activations (asymmetric), symmetric per-channel int8 weights, int32 bias")


def _kernel_choice(p: QuantPlan) -> tuple:
    return (p.activation_type, p.weight_type, p.activation_symmetric, p.weight_symmetric, p.per_channel,
            p.reduce_range, p.quantize_bias)


@dataclass(frozen=True)
class RuntimePlan:
    """One runtime's int8 in a run (the manifest's ``quantize_plans`` entry): its plan, the targets it
    serves, who makes that int8 and in which stage, the plan those targets actually get, and whether that
    is their own (always, since each runtime whose needs differ gets its own variant stage)."""

    runtime: str
    targets: tuple[str, ...]
    plan: QuantPlan
    made_by: str
    stage: str  # the stage whose graph the targets build from (a pass, or the target itself)
    judged_on: str  # the runtime the stage's parity ran on
    planned_for: str
    own_plan: bool

    def to_json(self) -> dict:
        return {"runtime": self.runtime, "targets": list(self.targets), "plan": self.plan.to_json(),
                "made_by": self.made_by, "stage": self.stage, "judged_on": self.judged_on,
                "planned_for": self.planned_for, "own_plan": self.own_plan}


def plans_for(targets) -> list[RuntimePlan]:
    """One entry per runtime among ``targets``: the IR's int8-static pass serves the runtime it is planned for
    (``runtime_for``), each runtime in ``variant_runtimes`` gets its own int8-static stage from the float IR,
    and TFLite's target quantizes by itself with its converter."""
    chosen = runtime_for(targets)
    variants = variant_runtimes(targets)
    by_runtime: dict[str, list[str]] = {}
    for t in tuple(targets or ()):
        if t in TARGET_RUNTIMES:
            by_runtime.setdefault(TARGET_RUNTIMES[t], []).append(t)
    out = []
    for runtime, served in by_runtime.items():
        if runtime == "tflite":
            plan = gets = tflite_plan()
            made_by, stage, judged = "the tflite target (TFLite's converter, from the float IR)", "tflite", "tflite"
        else:
            plan = int8_static_plan(runtime)
            own = runtime in variants
            gets = plan if own else int8_static_plan(chosen)
            stage = variant_stage(runtime) if own else "int8-static"
            made_by = ("its own int8-static stage, from the float IR" if own else "the int8-static pass")
            judged = ("onnxruntime (CPU), a proxy for TensorRT; the tensorrt stage runs the engine where "
                      "TensorRT and a GPU are present") if runtime == "tensorrt" else "onnxruntime (CPU)"
        out.append(RuntimePlan(runtime, tuple(served), plan, made_by, stage, judged, gets.runtime,
                               _kernel_choice(gets) == _kernel_choice(plan)))
    return out
