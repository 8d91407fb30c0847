"""What a manifest records so a run can be repeated: the run's configuration and hashes of its data.

``run`` holds everything ``forgeml reproduce`` needs besides the command line (the source reference,
targets, every pass with its config, tolerances, import options, the working directory), and the
calibration and parity data are recorded by hash (the parity inputs per source: example, generated,
user), so a rerun can tell whether it saw the same data. ``project`` is the calling project's git commit
when the working directory is a git checkout, so a manifest says which code produced the model.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING

from forgeml.manifest import DataHash, Manifest, ParityData, PassRun, ProjectRecord, RunRecord, TargetConfigRun

if TYPE_CHECKING:
    from forgeml.pipeline.config import PipelineConfig


def _plain(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return repr(obj)


def from_plain(cls, data, *, base: Path | None = None):
    """The inverse of ``_plain`` for a dataclass: nested dataclasses, tuples and paths rebuilt from type hints.

    ``base``: the directory relative ``Path`` fields are resolved against (the recorded run's working
    directory), so a rerun reads the same files without changing the process's working directory.
    Unknown keys are an error: a manifest from another forgeml must not be half-applied silently.
    """
    from forgeml.errors import InputError

    if not isinstance(data, dict):
        raise InputError(f"reproduce: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"reproduce: {cls.__name__} has no field(s) {', '.join(unknown)}; the manifest was "
                         f"written by another forgeml version")
    return cls(**{k: _from_hint(hints.get(k, typing.Any), v, base) for k, v in data.items()})


def _from_hint(hint, value, base: Path | None):
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        for a in options:  # the first option the value fits
            if dataclasses.is_dataclass(a) and isinstance(value, dict):
                return from_plain(a, value, base=base)
        return _from_hint(options[0], value, base) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_plain(hint, value, base=base)
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_hint(args[0], v, base) for v in value)
        if args and len(args) == len(value):
            return tuple(_from_hint(a, v, base) for a, v in zip(args, value))
        return tuple(value)
    if origin is list and isinstance(value, list):
        return [_from_hint(args[0] if args else typing.Any, v, base) for v in value]
    if origin in (dict, collections.abc.Mapping):
        if isinstance(value, dict) and len(args) == 2:
            return {k: _from_hint(args[1], v, base) for k, v in value.items()}
        return dict(value)
    if isinstance(hint, type) and issubclass(hint, Path) and isinstance(value, str):
        p = Path(value)
        return p if p.is_absolute() or base is None else Path(base) / p
    return value


def data_hash(batches) -> dict | None:
    """sha256 over a sequence of input dicts (names, dtypes, shapes and bytes), or None when empty."""
    from forgeml.ir import sha256_arrays

    batches = list(batches)
    if not batches:
        return None
    flat = {f"{i:06d}/{k}": v for i, b in enumerate(batches) for k, v in b.items()}
    return {"batches": len(batches), "sha256": sha256_arrays(flat)}


def git_project(cwd: str | os.PathLike | None = None, timeout: float = 2.0) -> ProjectRecord | None:
    """The git commit of the checkout ``cwd`` (default: the working directory) is in, and whether tracked
    files have uncommitted changes; None without git, outside a checkout, or when git does not answer
    within ``timeout`` seconds (never an error: the record is a courtesy, not a requirement). git is
    started only when it is on PATH and a ``.git`` is found at or above ``cwd``: a run elsewhere spawns
    nothing."""
    import shutil
    import subprocess

    start = Path(cwd or os.getcwd()).resolve()
    if shutil.which("git") is None or not any((d / ".git").exists() for d in (start, *start.parents)):
        return None

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout if r.returncode == 0 else None

    head = git("rev-parse", "--verify", "-q", "HEAD")
    if not head or not head.strip():
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return ProjectRecord(head.strip(), None if status is None else bool(status.strip()))


def parity_data(input_sets, generated: int) -> ParityData:
    """Hashes of the parity inputs by source: ``input_sets`` is [example, ``generated`` seeded batches,
    the user's sets…] (``parity.inputs.parity_inputs``'s order)."""
    sets = list(input_sets)

    return ParityData(_hash(sets[:1]), _hash(sets[1:1 + generated]), _hash(sets[1 + generated:]))


def record_provenance(manifest: Manifest, ref: str, config: PipelineConfig, input_sets=(), held_out=()) -> None:
    """Fill the manifest's ``run``, data hashes and ``project``."""
    manifest.run = run_record(ref, config)
    manifest.calibration = _hash(config.calibration)
    manifest.user_inputs = _hash(config.user_inputs)
    if input_sets:
        manifest.parity_data = parity_data(input_sets, config.parity_batches)
        manifest.parity_data.held_out = _hash(held_out)
    manifest.project = git_project()


def _hash(batches) -> DataHash | None:
    d = data_hash(batches)
    return DataHash.from_json(d) if d else None


def run_record(ref: str, config: PipelineConfig) -> RunRecord:
    return RunRecord(
        source=ref,
        targets=list(config.targets),
        passes=[PassRun(p.name, _plain(p.config)) for p in config.passes],
        quantize=config.quantize,
        parity_batches=config.parity_batches,
        seed=config.seed,
        tolerance=_plain(config.tolerance),
        import_options=_plain(config.import_options),
        target_configs={k: TargetConfigRun(type(v).__name__, _plain(v)) for k, v in dict(config.target_configs).items()},
        localize=config.localize,
        generate_tokens=config.generate_tokens,
        latency=config.latency,
        held_out_samples=config.held_out_samples,
        fail_on=config.fail_on,
        cwd=os.getcwd(),
    )
