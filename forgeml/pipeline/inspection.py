"""``forgeml inspect FILE``: what an artifact holds, read without running it.

The reader is the ``inspect`` of the target whose ``suffixes`` name the file; each returns a plain dict
the CLI prints and ``--json`` dumps. Weights are not loaded: safetensors headers are parsed directly,
ONNX external data is left on disk.
"""

from __future__ import annotations

from pathlib import Path

from forgeml.errors import InputError, require_file
from forgeml.targets import TARGETS


def inspectors() -> dict[str, object]:
    """Suffix → the target that reads it."""
    return {s: t for t in TARGETS.values() if hasattr(t, "inspect") for s in t.suffixes}


def inspect_file(path: Path) -> dict:
    require_file(path)  # a FIFO, device, directory or empty file: one line, never a blocking open
    known = inspectors()
    target = known.get(path.suffix.lower())
    if target is None:
        raise InputError(f"{path}: cannot inspect {path.suffix or 'suffix-less'} files; known: {', '.join(known)}")
    return target.inspect(path)
