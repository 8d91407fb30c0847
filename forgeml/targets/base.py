"""What a target is: ``Target`` (build an artifact, run it back), ``Artifact``, ``TargetContext``.

A target that needs something absent (a GPU, an extra, source weights) raises ``TargetError`` saying
which and how to get it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from forgeml.ir import ConvertResult, InputSet, IRModel, Runner, Signature, SourceWeights
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
    # The main file's sha256 when the target hashed the bytes as it wrote them (the manifest then does not
    # read a file as large as the model a second time). None: the manifest hashes the file.
    sha256: str | None = field(default=None, repr=False, compare=False)


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
    quantize: str | None = None  # the run's `quantize.mode` mode: targets with their own variants follow it
    calibration: tuple[InputSet, ...] = ()  # representative inputs (`quantize.calibration`), one batch each
    input_sets: tuple[InputSet, ...] = ()  # the parity inputs (example + seeded random + user's)
    config: object | None = None
    progress: Callable[[int, int], None] | None = None  # (done, total) from long loops (GGUF tensors)
    # False with `parity.outputs` off: the artifact's runtime will not run, so a target need not load it
    outputs_compared: bool = True

    @property
    def weights(self) -> SourceWeights | None:
        return self.converted.weights if self.converted is not None else None


@dataclass
class Opened:
    """An artifact file opened in its runtime, outside any run: what ``forgeml parity A B`` compares."""

    runner: Runner
    signature: Signature | None  # None: the file does not say; it takes the other side's names
    runtime: str
    precision: str | None = None  # what the file says it computes in, when it says
    example_inputs: InputSet | None = None


@dataclass(frozen=True)
class OpenContext:
    """What opening a file may need besides the file: the model a weights-only file runs in.
    ``source()`` imports that model once (None: the caller named none)."""

    model: str | None = None
    source: Callable[[], ConvertResult] | None = None


class Target(Protocol):
    """A target: build its artifact from the IR and run it back for parity. A target whose files can be
    read on their own also offers ``inspect(path) -> dict`` and ``open(path, OpenContext) -> Opened``;
    ``forgeml inspect`` and ``forgeml parity`` find them by ``suffixes``."""

    name: str
    Config: type | None  # the target's typed options (a dataclass), or None when it has none
    suffixes: tuple[str, ...]  # the suffixes of the files it writes

    def build(self, ir: IRModel, out_dir: Path, ctx: TargetContext) -> Artifact: ...

    def runner(self, artifact: Artifact, ctx: TargetContext) -> tuple[Runner, str]:
        """A runner over the artifact, and the precision to judge it by (None: the IR's)."""


def checked(runner: Runner, artifact: Path, package: Path | None = None) -> Runner:
    """``runner`` guarded by the package's contract: when ``signature.json`` sits in ``package`` (default:
    the artifact's own directory), every call first checks the input names, dtypes and ranks against it
    (one InputError line naming the file and the input). Without one (a bare file, or a run still being
    built) the runner is returned as it is."""
    from forgeml.formats.signature import contract_beside

    contract = contract_beside(package if package is not None else Path(artifact).parent)
    return runner if contract is None else CheckedRunner(runner, contract, Path(artifact))


class CheckedRunner:
    """A runner behind its package's ``signature.json``. The runner's own typed attributes (``session``,
    ``iomap``, ``latency``) are read through to it, so callers see the runner they asked for."""

    def __init__(self, inner: Runner, contract, artifact: Path):
        self.inner, self.contract, self.artifact = inner, contract, artifact

    def __call__(self, inputs):
        self.contract.check(inputs, self.artifact)
        return self.inner(inputs)

    def __getattr__(self, name: str):  # only for names this class does not define
        if name == "inner":  # not yet set (copy/unpickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)
