"""The option objects ``forgeml.convert`` takes besides ``ImportOptions`` (``forgeml.converters.base``)
and each target's ``Config``: what to quantize and within which budget, and how parity is checked.
Plain frozen records: the CLI builds them from its flags, the pipeline reads them."""

from __future__ import annotations

from dataclasses import dataclass

from forgeml.ir import InputSet


@dataclass(frozen=True)
class QuantizeOptions:
    """Lower the precision after the float passes, within an accuracy budget.

    ``mode``: fp16 | int8 (dynamic) | int8-static | int4. ``calibration``: representative input dicts
    (first axis = samples) for int8-static; ``synthetic_calibration`` calibrates on seeded random inputs
    instead (flagged in the report). ``max_cosine_drop`` / ``min_top1``: the budget against the float
    model (default: the precision's profile). ``min_centered_cosine``: the budget on the input-dependent
    part of the outputs (each minus its mean over every sample measured), which plain cosine
    cannot see on models whose outputs barely vary. ``calibrate_method``: how int8-static turns
    calibration activations into ranges (minmax | entropy | percentile).
    """

    mode: str
    calibration: tuple[InputSet, ...] = ()
    synthetic_calibration: bool = False
    max_cosine_drop: float | None = None
    min_top1: float | None = None
    min_centered_cosine: float | None = None
    calibrate_method: str = "minmax"


@dataclass(frozen=True)
class ParityOptions:
    """How every stage is checked: ``batches`` seeded random batches besides the example inputs, the
    caller's own ``inputs``, tolerance overrides, when to ``localize`` a failing stage's first
    diverging node (auto: graphs of moderate size | always | never), and ``generate_tokens``: how many
    greedy tokens a KV-cache decoder generates from each prompt in generation parity (0: none).
    ``held_out_samples``: with `quantize.mode`, fresh seeded samples every fp16/int8/int4 stage is also
    judged on (top-1 and centered cosine need tens of samples; no precision pass draws from their seeds).
    ``fail_on``: the gate (fail | warn: warnings fail too), recorded so the reports' verdict is the exit code's.
    ``outputs``: run each artifact in its runtime and compare its outputs with the source framework's;
    off (only for targets written from the source: gguf, safetensors) no reference is built and the
    source framework is never imported, so only the artifact's own checks run (GGUF: every tensor
    dequantized and compared with the source's), for conversions where time and memory matter more."""

    batches: int | None = None  # None: 3, or 0 when no requested target reads the IR (pipeline/plan.py)
    inputs: tuple[InputSet, ...] = ()
    atol: float | None = None
    rtol: float | None = None
    localize: str = "auto"
    generate_tokens: int = 32
    held_out_samples: int = 64
    fail_on: str = "fail"
    outputs: bool = True


@dataclass(frozen=True)
class MlflowOptions:
    """Log the finished package to MLflow: each artifact as an MLflow model (the onnx flavor for .onnx,
    a pyfunc wrapper running the file in its own runtime for the others), its signature, the manifest,
    reports and parity metrics.

    ``tracking_uri``: the tracking server or store (``http://…``, ``sqlite:///…``); None: the active
    run's, else MLflow's own default (``MLFLOW_TRACKING_URI``). ``experiment``: the experiment a new run
    goes to (None: MLflow's default). ``register``: a registered model name; the first artifact
    logged as a model (in ``targets`` order) becomes a new version of it. ``alias``: an alias set on that
    version. Files MLflow could not load on their own (safetensors weights, a TensorRT engine) are logged
    as run artifacts, not models.
    """

    tracking_uri: str | None = None
    experiment: str | None = None
    register: str | None = None
    alias: str | None = None
