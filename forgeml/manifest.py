"""The manifest as typed records: what a run did, measured and wrote, read by attribute.

``manifest.json`` is a contract other programs read (CI gates, MLflow logging, batch runners, a later
forgeml), so its keys are exactly the ones written before these records existed (docs/design.md,
"Manifest"); ``Manifest.to_json()`` writes them and ``Manifest.from_json()`` reads them back, keeping
the key order of the file and every key a newer version added (``extra``). The pipeline builds a
``Manifest``; the reports, the gate, ``reproduce``, ``report diff`` and the CLI read one.

Free-form by design, and so left as dicts: a stage's ``metadata`` (each target's own facts), a pass's
``config`` and the ``run`` record's option dumps (read back by ``pipeline.provenance.from_plain``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgeml.parity.measure import ParityRow
from forgeml.records import NULL, OMIT_EMPTY, Record


@dataclass
class SourceRecord(Record):
    """``source`` (and a ``parity A B`` run's ``candidate``): what was converted and how it was imported."""

    kind: str | None = None
    ref: str | None = None
    sha256: str | None = None
    framework: str | None = None
    route: str | None = None
    fallback: str | None = None  # why the preferred import route failed


@dataclass
class TensorRecord(Record):
    name: str = ""
    shape: list = field(default_factory=list)  # ints; a str is a named dynamic dim, None unknown
    dtype: str = ""


@dataclass
class SignatureRecord(Record):
    """The manifest's ``signature``; signature.json adds ``schema`` and the class ``labels``."""

    schema: str | None = None
    inputs: list[TensorRecord] = field(default_factory=list)
    outputs: list[TensorRecord] = field(default_factory=list)
    labels: list[str] | None = None

    def to_signature(self):
        from forgeml.ir import Signature

        return Signature.from_json(self.to_json())


@dataclass
class ToleranceRecord(Record):
    """The profile a stage was judged by, as ``parity.tolerances.Tolerance.to_json`` writes it."""

    name: str | None = None
    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None
    min_centered_cosine: float | None = None
    min_top1: float | None = None
    top1_on: str | None = None
    min_decided: int | None = None

    def describe(self, name: str) -> str:
        from forgeml.parity.tolerances import Tolerance

        return Tolerance(name=name, atol=self.atol, rtol=self.rtol, min_cosine=self.min_cosine,
                         min_centered_cosine=self.min_centered_cosine, min_top1=self.min_top1,
                         top1_on=self.top1_on, min_decided=self.min_decided).describe()


@dataclass
class ParityRecord(Record):
    """A stage's parity verdict (``StageParity.to_json``): one ``ParityRow`` per output."""

    passed: bool | None = None
    reference: str | None = None
    profile: str | None = None
    tolerance: ToleranceRecord = field(default_factory=ToleranceRecord)
    batches: int | None = None
    rows: list[ParityRow] = field(default_factory=list)
    sketches: dict[str, dict] = field(default_factory=dict, metadata=OMIT_EMPTY)  # output → histogram + sample

    def row(self, output: str) -> ParityRow | None:
        return next((r for r in self.rows if r.output == output), None)

    def worst(self) -> Worst:
        """The worst value of each metric over the outputs: the accuracy variants are compared by."""
        def pick(key: str, fn):
            values = [v for r in self.rows if (v := r.metric(key)) is not None]
            return fn(values) if values else None

        return Worst(pick("cosine", min), pick("centered_cosine", min), pick("top1", min), pick("max_abs", max))


@dataclass
class Worst:
    """The worst output's metrics of one stage (None: no output has that metric)."""

    cosine: float | None = None
    centered_cosine: float | None = None
    top1: float | None = None
    max_abs: float | None = None


@dataclass
class LatencyRecord(Record):
    """``runtime.latency``'s record: a median of a few runs, or a ``note`` saying why there is none."""

    median_ms: float | None = None
    min_ms: float | None = None
    runs: int | None = None
    inputs: dict[str, list] | None = None
    cpus: int | None = None
    where: str | None = None  # set when another process measured it
    load_1m: float | None = None
    note: str | None = None


@dataclass
class PassChanges(Record):
    modified: bool | None = None
    nodes_before: int | None = None
    nodes_after: int | None = None
    bytes_before: int | None = None
    bytes_after: int | None = None


@dataclass
class BudgetRecord(Record):
    """A precision pass's accuracy budget against the float model it was given."""

    min_cosine: float | None = None
    min_centered_cosine: float | None = None
    min_top1: float | None = None


@dataclass
class FallbackStep(Record):
    """One step of the accuracy-aware fallback: how many nodes kept in float, and what that measured."""

    kept: int | None = None
    added_nodes: list[str] = field(default_factory=list, metadata=OMIT_EMPTY)
    passed: bool | None = None
    cosine: float | None = None
    centered_cosine: float | None = None
    top1: float | None = None
    problem: str | None = None


@dataclass
class HeldOutRecord(Record):
    """The budget checked again on batches the fallback did not choose nodes on."""

    batches: int | None = None
    passed: bool | None = None
    cosine: float | None = None
    centered_cosine: float | None = None
    top1: float | None = None
    problem: str | None = None
    skipped: str | None = None  # inputs could not be made up outside the pipeline


@dataclass
class PassDetails(Record):
    """What a pass reports beyond its changes (``DetailedPassResult.details``): fusions fired,
    precision settings, the budget, the fallback's steps, warnings; a pass's own other keys stay in
    ``extra`` (the quantization plan, sensitivity ranking …)."""

    fusions: dict[str, int] | None = None
    settings: dict[str, Any] | None = None
    budget: BudgetRecord | None = None
    budget_batches: int | None = None
    kept_in_float: list[str] | None = None
    candidates: int | None = None
    steps: list[FallbackStep] | None = None
    held_out: HeldOutRecord | None = None
    warnings: list[str] | None = None


@dataclass
class NodeRef(Record):
    node: str | None = None
    op: str | None = None
    value: str | None = None
    module: str | None = None
    module_class: str | None = None


@dataclass
class DivergenceRecord(Record):
    """``parity.localize``'s answer for the first failing stage: the first node whose value diverges."""

    found: bool | None = None
    node: str | None = None
    op: str | None = None
    module: str | None = None
    module_class: str | None = None
    source_line: str | None = None
    evidence: str | None = None
    conditioning: dict[str, Any] | None = None  # ill-conditioned or broken: rounding-only error at the node
    detected_at: NodeRef | None = None
    metrics_at: str | None = None
    metrics: ParityRow | None = None  # the measured value's metrics against the stage's tolerance
    compared: int | None = None
    reference: str | None = None
    last_matching_value: str | None = None
    suspects: list[NodeRef] | None = None
    note: str | None = None


@dataclass
class StageRecord(Record):
    """One stage: the converter, a pass, a target (or a ``parity A B`` comparison), and its verdict."""

    name: str = ""
    kind: str = ""  # converter | pass | target | compare
    route: str | None = None  # converter: how the model was imported
    candidate: str | None = None  # compare: B
    config: dict[str, Any] | None = None  # pass: its Config as JSON
    artifact: str | None = None  # target: the file, relative to the output directory
    runtime: str | None = None  # target: what ran the artifact
    error: str | None = None  # target: why it could not be built or run
    seconds: float | None = None
    note: str | None = None  # a stage that was not checked, and why
    changes: PassChanges | None = None
    details: PassDetails | None = None
    metadata: dict[str, Any] | None = None  # target: its own facts (variant, route, versions …)
    latency: LatencyRecord | None = None
    parity: ParityRecord | None = None
    reference_latency: LatencyRecord | None = None
    reference_released: bool | None = None  # converter: the source model was dropped before the targets ran
    notes: list[str] = field(default_factory=list, metadata=OMIT_EMPTY)
    divergence: DivergenceRecord | None = None

    def metadata_note(self) -> str | None:
        """A target's own caveat (``metadata["note"]``: an option that did not apply, say)."""
        return (self.metadata or {}).get("note") or None


@dataclass
class FileRecord(Record):
    path: str = ""  # relative to the output directory
    sha256: str = ""
    bytes: int = 0


@dataclass
class ArtifactRecord(FileRecord):
    extra_files: list[FileRecord] | None = None  # e.g. model.onnx.data

    def files(self) -> list[FileRecord]:
        return [self, *(self.extra_files or [])]


@dataclass
class MachineRecord(Record):
    """``runtime.machine.Machine``: the CPU that made the latency and int8 numbers."""

    cpu: str | None = None
    arch: str | None = None
    logical_cpus: int | None = None
    usable_cpus: int | None = None
    flags: list[str] = field(default_factory=list)
    threads: dict[str, str] = field(default_factory=dict)
    load_1m: float | None = field(default=None, metadata=NULL)


@dataclass
class StagePlanRecord(Record):
    """``pipeline.plan.StagePlan``: which stages ran and why the others were skipped."""

    build_ir: bool | None = None
    run_passes: bool | None = None
    reason: str | None = None
    ir_targets: list[str] = field(default_factory=list)
    source_targets: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    reference_dtype: str | None = None
    parity_batches: int | None = None  # seeded batches besides the example: the caller's, or the plan's default


@dataclass
class PassRun(Record):
    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class TargetConfigRun(Record):
    type: str = ""
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunRecord(Record):
    """What ``forgeml reproduce`` replays for an API run (a CLI run replays ``command``)."""

    source: str = ""
    targets: list[str] = field(default_factory=list)
    passes: list[PassRun] = field(default_factory=list)
    quantize: str | None = field(default=None, metadata=NULL)
    parity_batches: int | None = None
    seed: int | None = None
    tolerance: dict[str, Any] = field(default_factory=dict)
    import_options: dict[str, Any] = field(default_factory=dict)
    target_configs: dict[str, TargetConfigRun] = field(default_factory=dict)
    localize: str | None = None
    generate_tokens: int | None = None
    latency: bool | None = None
    held_out_samples: int | None = None
    fail_on: str | None = None
    cwd: str | None = None


@dataclass
class DataHash(Record):
    """Data recorded by hash (names, dtypes, shapes and bytes of every batch), so a rerun can tell
    whether it saw the same data."""

    batches: int = 0
    sha256: str = ""


@dataclass
class ParityData(Record):
    """The parity inputs by where they came from: the example, the seeded batches generated from it,
    the user's ``--inputs``, and the held-out batches lower-precision stages are judged on too (a source
    with no batches is absent)."""

    example: DataHash | None = None
    generated: DataHash | None = None
    user: DataHash | None = None
    held_out: DataHash | None = None


@dataclass
class QuantPlanSettings(Record):
    """``passes.precision.plan.QuantPlan``: which int8 a runtime takes (types, symmetry, ranges)."""

    runtime: str | None = None
    activation_type: str | None = None
    weight_type: str | None = None
    activation_symmetric: bool | None = None
    weight_symmetric: bool | None = None
    per_channel: bool | None = None
    reduce_range: bool | None = None
    quantize_bias: bool | None = None
    cpu: str | None = None
    why: str | None = None


@dataclass
class QuantPlanRecord(Record):
    """One runtime's int8 in an int8-static run (``passes.precision.plan.RuntimePlan``): the targets it
    serves, its plan, who made it in which stage, what that stage's parity ran on."""

    runtime: str | None = None
    targets: list[str] = field(default_factory=list)
    plan: QuantPlanSettings | None = None
    made_by: str | None = None
    stage: str | None = None
    judged_on: str | None = None
    planned_for: str | None = None
    own_plan: bool | None = None


@dataclass
class ProjectRecord(Record):
    """The calling project's git checkout (the working directory's), when there is one."""

    commit: str = ""
    dirty: bool | None = None  # uncommitted changes to tracked files


@dataclass
class Manifest(Record):
    """``manifest.json``. ``ok`` is the parity verdict; ``errors`` the targets that could not be built."""

    forgeml_version: str = ""
    error: str | None = None  # written by early versions only: why the run stopped
    kind: str | None = None  # "parity" for a ``parity A B`` run; absent for a conversion
    ok: bool = False
    source: SourceRecord = field(default_factory=SourceRecord)
    candidate: SourceRecord | None = None  # parity A B: B
    signature: SignatureRecord | None = None
    opset: int | None = None  # a conversion writes null when no IR was built (``keep_null``)
    opset_imports: dict[str, int] | None = None
    precision: str | None = None
    stages: list[StageRecord] = field(default_factory=list)
    artifacts: dict[str, ArtifactRecord] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    machine: MachineRecord | None = None
    quantize: str | None = None
    quantize_plans: list[QuantPlanRecord] | None = None  # int8-static: the int8 of each runtime (precision.plan)
    errors: dict[str, str] = field(default_factory=dict, metadata=OMIT_EMPTY)  # target → why it failed
    fail_on: str | None = None  # the gate the run was converted under ("warn"; absent: "fail")
    command: str | None = None
    plan: StagePlanRecord | None = None
    warnings: list[str] = field(default_factory=list, metadata=OMIT_EMPTY)
    run: RunRecord | None = None
    calibration: DataHash | None = None
    user_inputs: DataHash | None = None
    parity_data: ParityData | None = None
    project: ProjectRecord | None = None

    @classmethod
    def coerce(cls, m) -> Manifest:
        """A ``Manifest`` from a manifest or its JSON (callers and older code hand over either)."""
        return m if isinstance(m, cls) else cls.from_json(m)

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        return cls.from_json(json.loads(Path(path).read_text()))

    def stage(self, name: str) -> StageRecord | None:
        return next((s for s in self.stages if s.name == name), None)

    def of_kind(self, kind: str) -> list[StageRecord]:
        return [s for s in self.stages if s.kind == kind]

    def checked(self) -> list[StageRecord]:
        """The stages that have a parity verdict."""
        return [s for s in self.stages if s.parity is not None]
