"""Models × targets × quantize modes → jobs, each with a stable id and a hash of everything it reads.

The id (``mlp.onnx.int8``) names the job's folder under OUT, so it must not change between runs of the
same file; the input hash (the job's options, forgeml's version, and the bytes of every file it reads)
is what ``--resume`` compares, so an edited model or calibration set reruns its jobs and nothing else.
``zoo:`` and ``python:module:function`` sources are hashed by their name (their code is forgeml's or an
installed package's); ``python:file.py:function`` also by the file's bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from forgeml.batch.spec import FLOAT, BatchSpec, ModelEntry, Resources


@dataclass(frozen=True)
class Job:
    """One conversion: a model to one target at one precision. Small and picklable: it travels to a worker."""

    id: str
    model: ModelEntry
    target: str
    quantize: str | None
    resources: Resources
    retries: int
    input_hash: str

    @property
    def precision(self) -> str:
        return self.quantize or "fp32"


def job_id(model: str, target: str, quantize: str | None) -> str:
    return f"{model}.{target}.{quantize or 'fp32'}"


def expand(spec: BatchSpec) -> list[Job]:
    """Every job of the file, in file order: per model, its targets, and per target its quantize modes."""
    from forgeml.version import __version__

    digests: dict[str, str] = {}
    jobs = []
    for m in spec.models:
        files = {p: _digest(p, digests) for p in _files_of(m)}
        for target in m.targets:
            resources = m.resources.over(spec.target_resources.get(target, Resources()).over(spec.resources)).filled()
            for q in m.quantize:
                jid = job_id(m.name, target, q)
                key = {"forgeml": __version__, "id": jid, "model": _options(m), "target": target,
                       "quantize": q or FLOAT, "files": files}
                jobs.append(Job(id=jid, model=m, target=target, quantize=q, resources=resources, retries=spec.retries,
                                input_hash=hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()))
    return jobs


def _options(m: ModelEntry) -> dict:
    """The model entry as it affects a conversion (not its line, not the resources it runs with)."""
    d = asdict(m)
    for k in ("line", "resources", "targets", "quantize"):
        d.pop(k)
    return d


def _files_of(m: ModelEntry) -> list[str]:
    out = [] if m.src.startswith(("zoo:", "python:")) else [m.src]
    module = m.src.split(":")[1] if m.src.startswith("python:") and m.src.count(":") == 2 else ""
    if module.endswith(".py") and Path(module).is_file():  # python:path/to/file.py:function: its code is an input
        out.append(module)
    out += list(m.inputs)
    if m.calibration:
        out.append(m.calibration)
    return out


def _digest(path: str, cache: dict[str, str]) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    if path in cache:
        return cache[path]
    h = hashlib.sha256()
    p = Path(path)
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
    for f in files:
        if f is not p:
            h.update(os.fsencode(f.relative_to(p)) + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    cache[path] = h.hexdigest()
    return cache[path]
