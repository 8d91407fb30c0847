"""What a manifest records so a run can be repeated: the run's configuration and hashes of its data.

``run`` holds everything ``forgeml reproduce`` needs besides the command line (the source reference,
targets, every pass with its config, tolerances, import options, the working directory), and the
calibration and user-input data are recorded by hash, so a rerun can tell whether it saw the same data.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING

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


def run_record(ref: str, config: PipelineConfig) -> dict:
    run = {
        "source": ref,
        "targets": list(config.targets),
        "passes": [{"name": p.name, "config": _plain(p.config)} for p in config.passes],
        "quantize": config.quantize,
        "parity_batches": config.parity_batches,
        "seed": config.seed,
        "tolerance": _plain(config.tolerance),
        "import_options": _plain(config.import_options),
        "target_configs": {k: {"type": type(v).__name__, "config": _plain(v)}
                           for k, v in dict(config.target_configs).items()},
        "localize": config.localize,
        "generate_tokens": config.generate_tokens,
        "latency": config.latency,
        "cwd": os.getcwd(),
    }
    out = {"run": run}
    calib = data_hash(config.calibration)
    if calib:
        out["calibration"] = calib
    user = data_hash(config.user_inputs)
    if user:
        out["user_inputs"] = user
    return out
