"""The job function: one ``forgeml.convert`` into ``OUT/jobs/<id>``, returned as a small ``JobRecord``.

The same function runs in a fresh Ray worker (one per job: a conversion leaves framework state, thread
pools and memory behind) and, with ``--cluster none``, in the driver's own process. Conversion and
parity failures are results (a record with verdict FAIL or ERROR), never exceptions, so the scheduler
can tell them from a worker that died. In a worker the thread pools are sized from the task's CPUs
before any framework is imported (OMP/MKL for torch, ``FORGEML_THREADS`` for onnxruntime's intra-op
pool), so two jobs on a 2-CPU node do not each start two threads per core.

The job sees ``FORGEML_BATCH_JOB`` (its id) and ``FORGEML_BATCH_ATTEMPT`` (1, then 2 after a retry) in
its environment, for ``python:`` sources that want to know.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from forgeml.batch.jobs import Job
from forgeml.batch.record import JOBS, ArtifactRecord, JobRecord, running_path
from forgeml.errors import ForgeError, first_line

if TYPE_CHECKING:
    from forgeml.manifest import Manifest

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "FORGEML_THREADS")


def run_job(job: Job, out: str, attempt: int = 1, threads: int | None = None, node_id: str = "") -> JobRecord:
    """Convert ``job`` into ``out/jobs/<id>`` (replacing an earlier attempt's output) and say how it went.
    ``threads``: size the thread pools (a worker's CPUs); ``node_id``: the Ray node, for the record."""
    t0 = time.monotonic()
    root = Path(out)
    env = {"FORGEML_BATCH_JOB": job.id, "FORGEML_BATCH_ATTEMPT": str(attempt)}
    if threads:
        env.update({k: str(threads) for k in THREAD_ENV})
    where = {"node_id": node_id, "host": socket.gethostname(), "pid": os.getpid()}
    with _environment(env), _torch_threads(threads):
        try:
            running_path(root, job.id).write_text(json.dumps({**where, "attempt": attempt, "started": time.time()}))
        except OSError as e:  # a node that does not see OUT: say so, not a FileNotFoundError from Ray
            rec = JobRecord(id=job.id, model=job.model.name, src=job.model.src, target=job.target,
                            precision=job.precision, input_hash=job.input_hash, verdict="ERROR",
                            message=f"output {out} cannot be written from host {where['host']} ({e.strerror}); "
                                    "OUT must be a path every node reaches")
        else:
            rec = _convert(job, root)
    rec.seconds = round(time.monotonic() - t0, 3)
    rec.attempts = attempt
    rec.node_id, rec.host, rec.pid = where["node_id"], where["host"], where["pid"]
    return rec


def _convert(job: Job, root: Path) -> JobRecord:
    from forgeml.api import convert
    from forgeml.converters.base import ImportOptions
    from forgeml.options import ParityOptions, QuantizeOptions
    from forgeml.parity.inputs import load_calibration, parse_input_spec, read_npz

    m = job.model
    rec = JobRecord(id=job.id, model=m.name, src=m.src, target=job.target, precision=job.precision,
                    input_hash=job.input_hash, verdict="ERROR")
    out_dir = root / JOBS / job.id
    try:
        quantize = None if job.quantize is None else QuantizeOptions(
            job.quantize, calibration=tuple(load_calibration(m.calibration)) if m.calibration else (),
            synthetic_calibration=m.synthetic_calibration)
        result = convert(
            m.src, targets=[job.target], out_dir=out_dir, quantize=quantize, force=True,
            parity=ParityOptions(batches=m.parity_batches, inputs=tuple(read_npz(p) for p in m.inputs),
                                 atol=m.atol, rtol=m.rtol),
            options=ImportOptions(dynamic_batch=m.dynamic_batch, opset=m.opset, trust_pickle=m.trust_pickle,
                                  signature=m.signature,
                                  input_specs=tuple(parse_input_spec(s) for s in m.input_specs)))
    except ForgeError as e:
        rec.message = first_line(e)
        return rec
    except Exception as e:  # a bug in a converter or a framework: this job's result, not the batch's end
        rec.message = "internal error: " + first_line(e, with_type=True)
        return rec
    return _from_manifest(rec, result.record, root, out_dir)


def _from_manifest(rec: JobRecord, manifest: Manifest, root: Path, out_dir: Path) -> JobRecord:
    from forgeml.report.gating import exit_code, summary

    s = summary(manifest)
    code = exit_code(manifest)
    rec.verdict = "PASS" if code == 0 else "FAIL" if code == 1 else "ERROR"
    if manifest.errors:
        rec.message = "; ".join(f"{k}: {v}" for k, v in manifest.errors.items())
    elif s["first_failure"]:
        failing = next(st for st in s["stages"] if st["name"] == s["first_failure"])["failing"][0]
        rec.message = f"{s['first_failure']}: {failing['output']} {failing['problem']}".strip()
    rel = out_dir.relative_to(root)
    rec.out_dir = str(rel)
    rec.report = str(rel / "report.html") if (out_dir / "report.html").is_file() else None
    rec.artifacts = [ArtifactRecord(target=name, path=str(rel / a.path), bytes=a.bytes, sha256=a.sha256)
                     for name, a in manifest.artifacts.items()]
    rec.latency_ms = next((st["latency_ms"] for st in s["stages"] if st["kind"] == "target" and "latency_ms" in st),
                          None)
    return rec


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """In-process (``--cluster none``) torch's pool already exists and reads no environment: size it for
    the job and put it back after (a fresh Ray worker sizes it from OMP_NUM_THREADS on import)."""
    import sys

    if not threads or "torch" not in sys.modules:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Set variables for the job; put the old ones back (matters in-process, where jobs follow each other)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
