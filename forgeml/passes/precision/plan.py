"""Which int8 the static quantizer writes, decided by the runtime that will run it and the CPU.

One QDQ file cannot suit every runtime: onnxruntime's CPU kernels are fastest on uint8 asymmetric
activations (and, without VNNI, 7-bit weights so u8×s8 pairs do not saturate 16 bits), while TensorRT
imports Q/DQ only as *symmetric signed* int8 (zero points 0, INT8 type) and has no int32 bias
dequantization. The plan is recorded in the pass details so the manifest says which runtime a
quantized model was made for.
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


def runtime_for(targets) -> str:
    """The runtime a run's int8-static ONNX is made for: TensorRT when it is among the targets (its
    needs are strict; onnxruntime runs a symmetric s8 QDQ model too), else onnxruntime on this CPU."""
    return "tensorrt" if "tensorrt" in tuple(targets or ()) else "onnxruntime-cpu"


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


# Which runtime runs each target's int8 (targets that do not run an int8 ONNX graph are absent).
TARGET_RUNTIMES = {"onnx": "onnxruntime-cpu", "triton": "onnxruntime-cpu", "tensorrt": "tensorrt", "tflite": "tflite"}


def tflite_plan() -> QuantPlan:
    """What TFLite's converter writes for full-integer int8 (the tflite target quantizes by itself)."""
    from forgeml.passes.precision.cpu_features import int8_settings

    return QuantPlan("tflite", "int8", "int8", False, True, True, False, True, int8_settings().isa,
                     "TFLite's converter: int8 activations (asymmetric), symmetric per-channel int8 weights, int32 bias")


def _kernel_choice(p: QuantPlan) -> tuple:
    return (p.activation_type, p.weight_type, p.activation_symmetric, p.weight_symmetric, p.per_channel,
            p.reduce_range, p.quantize_bias)


def plans_for(targets) -> list[dict]:
    """One entry per runtime among ``targets``: its plan, the targets it serves, who makes that int8, and
    whether it is the int8 those targets actually get (the IR's int8-static pass is planned for one runtime,
    ``runtime_for``; a runtime whose needs differ and that does not quantize by itself is served that plan).
    The manifest records this as ``quantize_plans`` so a reader sees which int8 each target runs."""
    chosen = runtime_for(targets)
    by_runtime: dict[str, list[str]] = {}
    for t in tuple(targets or ()):
        if t in TARGET_RUNTIMES:
            by_runtime.setdefault(TARGET_RUNTIMES[t], []).append(t)
    ir_plan = int8_static_plan(chosen)
    out = []
    for runtime, served in by_runtime.items():
        plan = tflite_plan() if runtime == "tflite" else int8_static_plan(runtime)
        made_by = "the tflite target (TFLite's converter, from the float IR)" if runtime == "tflite" else "the int8-static pass"
        gets = plan if runtime == "tflite" else ir_plan
        out.append({"runtime": runtime, "targets": served, "plan": plan.to_json(), "made_by": made_by,
                    "planned_for": gets.runtime, "own_plan": _kernel_choice(gets) == _kernel_choice(plan)})
    return out
