"""``requirements-<target>.txt``: the runtime each artifact was proven with, pinned to the version that
ran its parity check, so the package names exactly what reproduces its numbers.

Read from the target stage's ``runtime`` string (``onnxruntime 1.32.0``, ``ai-edge-litert 1.4.0
interpreter``, ``torch 2.13.0 AOTInductor …``): each ``name version`` in it that is an installed
distribution at that version is pinned. A runtime string naming no installed distribution writes no file.
"""

from __future__ import annotations

import re
from pathlib import Path

from forgeml.fileio import write_bytes_atomic
from forgeml.manifest import Manifest

_PAIR = re.compile(r"([A-Za-z][A-Za-z0-9_.-]*)\s+\(?v?(\d+(?:\.\d+)+[A-Za-z0-9.+-]*)")


def pins(runtime: str) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name, ver in _PAIR.findall(runtime or ""):
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        if installed.split("+")[0] == ver.split("+")[0]:
            out.append(f"{name.lower()}=={installed}")
    return list(dict.fromkeys(out))


def write_requirements(out_dir: Path, manifest: Manifest | dict) -> list[Path]:
    m = Manifest.coerce(manifest)
    written = []
    for stage in m.of_kind("target"):
        if stage.name not in m.artifacts:
            continue
        lines = pins(stage.runtime or "")
        if not lines:
            continue
        path = Path(out_dir) / f"requirements-{stage.name}.txt"
        head = f"# the runtime forgeml {m.forgeml_version} ran {stage.name}'s parity check with\n"
        write_bytes_atomic(path, (head + "\n".join(lines) + "\n").encode())
        written.append(path)
    return written
