"""Targets: emit an artifact from the IR, and load it back as a runner for parity.

``TARGETS`` is the one table mapping ``--to`` names to targets. A target that needs something
absent (a GPU, an extra, source weights) raises ``TargetError`` saying which and how to get it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from forgeml.converters import SourceWeights
    from forgeml.ir import IRModel
    from forgeml.validation import Runner


@dataclass
class Artifact:
    target: str
    path: Path  # the main file
    files: list[Path] = field(default_factory=list)  # every file written (main file included)
    runtime: str = ""  # what the runner executes it with, e.g. "onnxruntime 1.32.0"
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TargetContext:
    """What a target may use besides the IR: the source's own weights (for weight-file targets)."""

    weights: SourceWeights | None = None
    forgeml_version: str = ""


class Target(Protocol):
    name: str

    def build(self, ir: IRModel, out_dir: Path, ctx: TargetContext) -> Artifact: ...

    def runner(self, artifact: Artifact, ctx: TargetContext) -> tuple[Runner, str]:
        """A runner over the artifact, and the precision to judge it by (None: the IR's)."""


def _table() -> dict[str, Target]:
    from forgeml.targets.onnx import OnnxTarget
    from forgeml.targets.safetensors import SafetensorsTarget

    return {t.name: t for t in (OnnxTarget(), SafetensorsTarget())}


TARGETS: dict[str, Target] = _table()
