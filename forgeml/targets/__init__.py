"""Targets: emit an artifact from the IR, and load it back as a runner for parity.

``TARGETS`` is the one table mapping ``--to`` names to targets. A target that needs something
absent (a GPU, an extra, source weights) raises ``TargetError`` saying which and how to get it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from forgeml.converters import ConvertResult, SourceWeights
    from forgeml.ir import IRModel
    from forgeml.validation import InputSet, Runner


@dataclass
class Artifact:
    target: str
    path: Path  # the main file
    files: list[Path] = field(default_factory=list)  # every file written (main file included)
    runtime: str = ""  # what the runner executes it with, e.g. "onnxruntime 1.32.0"
    metadata: dict = field(default_factory=dict)
    # The IR the artifact was built from, in memory only (not in the manifest): for runners that check
    # the artifact against onnxruntime on that very graph (tensorrt). None when unknown.
    built_from: IRModel | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class TargetContext:
    """What a target may use besides the IR.

    ``converted`` is the converter's whole result (source weights, reference runner, example inputs),
    for targets that write from the source rather than from the IR (safetensors, GGUF). ``config`` is
    this target's own typed config from ``PipelineConfig.target_configs`` (None: its defaults).
    """

    converted: ConvertResult | None = None
    float_ir: IRModel | None = None  # the last fp32 IR: targets that quantize by themselves start here
    forgeml_version: str = ""
    quantize: str | None = None  # the run's --quantize mode: targets with their own variants follow it
    calibration: tuple[InputSet, ...] = ()  # representative inputs (--calib), one batch each
    input_sets: tuple[InputSet, ...] = ()  # the parity inputs (example + seeded random + user's)
    config: object | None = None

    @property
    def weights(self) -> SourceWeights | None:
        return self.converted.weights if self.converted is not None else None


class Target(Protocol):
    name: str
    Config: type | None  # the target's typed options (a dataclass), or None when it has none

    def build(self, ir: IRModel, out_dir: Path, ctx: TargetContext) -> Artifact: ...

    def runner(self, artifact: Artifact, ctx: TargetContext) -> tuple[Runner, str]:
        """A runner over the artifact, and the precision to judge it by (None: the IR's)."""


def _table() -> dict[str, Target]:
    from forgeml.targets.gguf import GgufTarget
    from forgeml.targets.onnx import OnnxTarget
    from forgeml.targets.safetensors import SafetensorsTarget
    from forgeml.targets.tensorrt import TensorRTTarget
    from forgeml.targets.tflite import TFLiteTarget
    from forgeml.targets.torch_aoti import TorchAOTITarget

    return {t.name: t for t in (OnnxTarget(), SafetensorsTarget(), TensorRTTarget(), TorchAOTITarget(),
                                GgufTarget(), TFLiteTarget())}


TARGETS: dict[str, Target] = _table()
