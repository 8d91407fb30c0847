"""Runs the jobs: one Ray task per job, or one after another in this process (``--cluster none``).

Each Ray task gets the job's resources and a fresh worker (``max_calls=1``). Ray's own retries are off
(``max_retries=0``): the driver resubmits a job itself when its worker or node died or was killed for
memory (``INFRASTRUCTURE``), at most ``retries`` times, recording why each attempt ended. A conversion
or parity failure comes back as a record and is final. Jobs no node can run are recorded UNSCHEDULABLE
before anything is submitted. Each record is saved to OUT as it arrives.
"""

from __future__ import annotations

import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from forgeml.batch.cluster import Cluster, unschedulable
from forgeml.batch.job import run_job
from forgeml.batch.jobs import Job
from forgeml.batch.record import JobRecord, running_path, save
from forgeml.errors import first_line


@dataclass(frozen=True)
class BatchEvent:
    """What the driver tells its caller (the CLI's bar): ``kind`` is "done" (``record`` set), "retry"
    (``message`` says why) or "tick" (counts only, about twice a second)."""

    kind: str
    total: int
    done: int
    failed: int
    running: int
    record: JobRecord | None = None
    message: str = ""


def infrastructure_errors() -> tuple[type[BaseException], ...]:
    """Ray's errors for a lost worker or node (crash, kill, OOM kill): the only ones a job is retried for."""
    from ray import exceptions as rx

    return (rx.WorkerCrashedError, rx.NodeDiedError, rx.OutOfMemoryError, rx.LocalRayletDiedError,
            rx.ObjectLostError)


def task_threads(job: Job) -> int:
    """The thread pools a job computes with: its CPUs, on Ray and in-process alike, so that what a job
    measures (and what a pass decides from it) does not depend on where it ran."""
    return max(1, int(job.resources.num_cpus or 1))


def _ray_entry(job: Job, out: str, attempt: int, threads: int) -> JobRecord:
    """The Ray task: the job function, told which node it is on."""
    import ray

    return run_job(job, out, attempt, threads, node_id=ray.get_runtime_context().get_node_id())


class _Tally:
    def __init__(self, out: Path, total: int, on_event: Callable[[BatchEvent], None]):
        self.out, self.total, self.on_event = out, total, on_event
        self.records: dict[str, JobRecord] = {}
        self.running = 0

    def finish(self, rec: JobRecord) -> None:
        save(self.out, rec)
        with suppress(FileNotFoundError):
            running_path(self.out, rec.id).unlink()
        self.records[rec.id] = rec
        self.emit("done", record=rec)

    def emit(self, kind: str, record: JobRecord | None = None, message: str = "") -> None:
        failed = sum(not r.ok for r in self.records.values())
        self.on_event(BatchEvent(kind, self.total, len(self.records), failed, self.running, record, message))


def _blank(job: Job, verdict: str, message: str) -> JobRecord:
    return JobRecord(id=job.id, model=job.model.name, src=job.model.src, target=job.target, precision=job.precision,
                     input_hash=job.input_hash, verdict=verdict, message=message, attempts=0)


def run_jobs(jobs: list[Job], out: Path, cluster: Cluster, *, max_parallel: int | None = None,
             done: list[JobRecord] = (), on_event: Callable[[BatchEvent], None] = lambda e: None) -> list[JobRecord]:
    """Run ``jobs`` on ``cluster`` (``done``: records --resume kept); the records in job order."""
    tally = _Tally(out, len(jobs) + len(done), on_event)
    for rec in done:
        tally.records[rec.id] = rec
        tally.emit("done", record=rec)
    todo = []
    for job in jobs:
        why = None if cluster.kind == "none" else unschedulable(job.resources, cluster.nodes)
        if why:
            tally.finish(_blank(job, "UNSCHEDULABLE", why))
        else:
            todo.append(job)
    if cluster.kind == "none":
        for job in todo:
            tally.running = 1
            tally.emit("tick")
            rec = run_job(job, str(out), threads=task_threads(job))
            tally.running = 0
            tally.finish(rec)
    else:
        _on_ray(todo, out, tally, max_parallel)
    order = {r.id: i for i, r in enumerate([*done, *jobs])}
    return sorted(tally.records.values(), key=lambda r: order[r.id])


def _on_ray(jobs: list[Job], out: Path, tally: _Tally, max_parallel: int | None) -> None:
    import ray

    infra = infrastructure_errors()
    task = ray.remote(max_calls=1)(_ray_entry)
    queue = deque((job, 1, []) for job in jobs)
    inflight: dict = {}
    last_tick = 0.0
    try:
        while queue or inflight:
            while queue and (not max_parallel or len(inflight) < max_parallel):
                job, attempt, retried = queue.popleft()
                r = job.resources
                ref = task.options(num_cpus=r.num_cpus, num_gpus=r.num_gpus, memory=r.memory,
                                   resources=dict(r.custom) or None, max_retries=0, retry_exceptions=False,
                                   name=job.id).remote(job, str(out), attempt, task_threads(job))
                inflight[ref] = (job, attempt, retried)
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
            for ref in ready:
                job, attempt, retried = inflight.pop(ref)
                try:
                    rec = ray.get(ref)
                except infra as e:
                    why = f"attempt {attempt}: {type(e).__name__}: {first_line(e)}"
                    with suppress(FileNotFoundError):
                        running_path(out, job.id).unlink()
                    if attempt <= job.retries:
                        queue.appendleft((job, attempt + 1, [*retried, why]))
                        tally.emit("retry", message=f"{job.id}: {why}; retrying")
                        continue
                    rec = _blank(job, "LOST", f"its worker or node was lost {attempt} time(s); last: {why}")
                    rec.attempts = attempt
                except ray.exceptions.RayError as e:  # the task itself could not run (environment, import)
                    rec = _blank(job, "ERROR", f"the Ray task failed: {first_line(e, with_type=True, root=True)}")
                    rec.attempts = attempt
                rec.retried = retried
                tally.running = _count_running(out, inflight)
                tally.finish(rec)
            now = time.monotonic()
            if now - last_tick >= 0.5:
                tally.running = _count_running(out, inflight)
                tally.emit("tick")
                last_tick = now
    except BaseException:
        for ref in inflight:  # Ctrl-C or a driver error: do not leave tasks converting into OUT
            with suppress(Exception):
                ray.cancel(ref, force=True)
        raise


def _count_running(out: Path, inflight: dict) -> int:
    """Jobs that have started in a worker (their running file exists); the rest wait for resources."""
    return sum(running_path(out, job.id).exists() for job, _, _ in inflight.values())
