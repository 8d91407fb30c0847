"""What a manifest records so a run can be repeated: the run's configuration and hashes of its data.

``run`` holds everything ``forgeml reproduce`` needs besides the command line (the source reference,
targets, every pass with its config, tolerances, import options, the working directory), and the
calibration and user-input data are recorded by hash, so a rerun can tell whether it saw the same data.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forgeml.pipeline import PipelineConfig


def _plain(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return repr(obj)


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
