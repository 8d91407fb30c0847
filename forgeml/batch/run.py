"""``run_batch``: job file → jobs → cluster → records → summaries, and the exit code.

OUT holds ``jobs/<id>/`` (each job's whole conversion: artifacts, manifest.json, report.html),
``records/<id>.json`` and the summaries. An existing non-empty OUT is refused unless ``resume`` (keep
the jobs that passed with unchanged inputs, rerun the rest) or ``force`` (start over).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from forgeml.batch.record import JOBS, RECORDS, JobRecord, resumable
from forgeml.batch.scheduler import BatchEvent
from forgeml.errors import InputError


@dataclass(frozen=True)
class BatchOptions:
    """``cluster``: local | auto | none | ray://HOST:PORT | HOST:PORT. ``max_parallel``: at most this many jobs
    submitted at once (None: as many as the cluster's resources allow). ``resume`` / ``force``: what to do
    with an OUT that already holds a batch."""

    cluster: str = "local"
    max_parallel: int | None = None
    resume: bool = False
    force: bool = False


@dataclass
class BatchResult:
    out_dir: Path
    records: list[JobRecord]
    summary: dict  # summary.json's content

    @property
    def exit_code(self) -> int:
        return self.summary["exit_code"]

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def run_batch(jobs_file: str | Path, out_dir: str | Path, options: BatchOptions = BatchOptions(),
              on_event: Callable[[BatchEvent], None] = lambda e: None) -> BatchResult:
    """Run every job of ``jobs_file`` into ``out_dir``; raises ``JobFileError`` (exit 2) before running
    anything when the file is wrong, and ``InputError`` for an OUT it may not write."""
    from forgeml.batch import spec as spec_mod
    from forgeml.batch.cluster import check_cluster, connect
    from forgeml.batch.jobs import expand
    from forgeml.batch.scheduler import run_jobs
    from forgeml.batch.summary import write
    from forgeml.runtime.machine import detect

    check_cluster(options.cluster)
    if options.max_parallel is not None and options.max_parallel < 1:
        raise InputError(f"`BatchOptions.max_parallel` {options.max_parallel}: must be 1 or more")
    if options.resume and options.force:
        raise InputError("`BatchOptions.resume` keeps finished jobs and `BatchOptions.force` discards them: give one")
    spec = spec_mod.load(jobs_file)
    jobs = expand(spec)
    out = Path(out_dir).resolve()
    _prepare(out, options)
    done, todo = [], []
    for job in jobs:
        rec = resumable(out, job.id, job.input_hash) if options.resume else None
        (done if rec else todo).append(rec or job)
    t0 = time.monotonic()
    with connect(options.cluster, out) as cluster:
        records = run_jobs(todo, out, cluster, max_parallel=options.max_parallel, done=done, on_event=on_event)
        info = cluster.to_json()
    meta = {"jobs_file": str(spec.path), "out_dir": str(out), "cluster": info,
            "seconds": round(time.monotonic() - t0, 3), "resumed": len(done), "machine": detect().line()}
    return BatchResult(out, records, write(out, records, meta))


def _prepare(out: Path, options: BatchOptions) -> None:
    from forgeml.batch.summary import FILES
    from forgeml.fileio import check_out_dir

    if out.exists() and out.is_dir() and any(out.iterdir()) and not (options.resume or options.force):
        raise InputError(f"output {out} already holds files; pass `BatchOptions.resume` to keep the jobs that "
                         f"passed, or `BatchOptions.force` to start over")
    check_out_dir(out, True)
    if options.force:
        for name in (JOBS, RECORDS):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in FILES:
            (out / name).unlink(missing_ok=True)
    try:
        (out / JOBS).mkdir(parents=True, exist_ok=True)
        (out / RECORDS).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"output {out}: cannot create it ({e.strerror})") from e
    for stale in (out / RECORDS).glob("*.running.json"):  # left by a batch that was killed
        stale.unlink(missing_ok=True)
