"""What one job leaves behind: a small ``JobRecord`` (the task's return value, a few hundred bytes: the
artifacts themselves stay in OUT) saved as ``OUT/records/<id>.json`` the moment it arrives, so a batch
killed halfway can ``--resume`` from the jobs that finished.

Verdicts: PASS (every stage within tolerance), FAIL (a parity failure; artifacts and reports written),
ERROR (the conversion could not be done: bad model, a target that could not be built), UNSCHEDULABLE
(no node has the resources it asks for; never submitted), LOST (its worker or node died more often
than ``retries`` allows).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from forgeml.fileio import write_json_atomic
from forgeml.manifest import Manifest

VERDICTS = ("PASS", "FAIL", "ERROR", "UNSCHEDULABLE", "LOST")
RECORDS = "records"
JOBS = "jobs"


@dataclass(frozen=True)
class ArtifactRecord:
    target: str
    path: str  # relative to OUT
    bytes: int
    sha256: str


@dataclass
class JobRecord:
    id: str
    model: str
    src: str
    target: str
    precision: str
    input_hash: str
    verdict: str
    message: str = ""  # why it is not PASS: the first failing stage and output, or the error
    out_dir: str | None = None  # relative to OUT: jobs/<id>
    report: str | None = None  # relative to OUT: jobs/<id>/report.html
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    latency_ms: float | None = None  # the artifact's median on the example batch (manifest's target stage)
    seconds: float = 0.0
    attempts: int = 1
    retried: list[str] = field(default_factory=list)  # why each earlier attempt ended
    node_id: str = ""  # the Ray node that ran it ("" in-process)
    host: str = ""
    pid: int | None = None
    resumed: bool = False  # taken from an earlier run by --resume

    @property
    def ok(self) -> bool:
        return self.verdict == "PASS"

    @property
    def bytes(self) -> int:
        return sum(a.bytes for a in self.artifacts)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> JobRecord:
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["artifacts"] = [ArtifactRecord(**a) for a in d.get("artifacts", [])]
        return cls(**d)


def record_path(out: Path, job_id: str) -> Path:
    return out / RECORDS / f"{job_id}.json"


def running_path(out: Path, job_id: str) -> Path:
    """Written by a job when it starts (host, pid, attempt), removed by the driver when it ends: what the
    progress bar counts as running, and where a person finds the worker's pid."""
    return out / RECORDS / f"{job_id}.running.json"


def save(out: Path, record: JobRecord) -> None:
    write_json_atomic(record_path(out, record.id), record.to_json())


def resumable(out: Path, job_id: str, input_hash: str) -> JobRecord | None:
    """The earlier record of a job --resume may skip: it passed, its input hash is unchanged, and its
    manifest (the conversion's own word) says ok with every artifact file still present."""
    try:
        rec = JobRecord.from_json(json.loads(record_path(out, job_id).read_text()))
        manifest = Manifest.read(out / JOBS / job_id / "manifest.json")
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if not (rec.ok and rec.input_hash == input_hash and manifest.ok and not manifest.errors):
        return None
    if not all((out / a.path).is_file() and (out / a.path).stat().st_size == a.bytes for a in rec.artifacts):
        return None
    rec.resumed = True
    return rec
