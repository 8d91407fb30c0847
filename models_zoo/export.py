"""Write a zoo model to a file in its own framework's format, plus its example inputs as .npz,
so the file routes (``forgeml convert model.pt2``) can be tried without writing any code."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models_zoo import ZOO, ZooBuild


def _save_torch(build: ZooBuild, out: Path) -> Path:
    import torch

    args = tuple(torch.from_numpy(a) for a in build.example_inputs.values())
    path = out.with_suffix(".pt2")
    torch.export.save(torch.export.export(build.model, args), str(path))
    return path


def _save_keras(build: ZooBuild, out: Path) -> Path:
    path = out.with_suffix(".keras")
    build.model.save(str(path))
    return path


def _save_sklearn(build: ZooBuild, out: Path) -> Path:
    import skops.io

    path = out.with_suffix(".skops")  # the safe format: loading it runs no pickle
    skops.io.dump(build.model, str(path))
    return path


SAVERS = {"torch": _save_torch, "tensorflow": _save_keras, "sklearn": _save_sklearn}


def export(name: str, out: Path) -> tuple[Path, Path]:
    """Returns (model file, example inputs .npz)."""
    entry = ZOO[name]
    saver = SAVERS.get(entry.kind)
    if saver is None:
        raise KeyError(f"zoo:{name} is a {entry.kind} model; export knows {', '.join(SAVERS)}")
    build = entry.build()
    out.parent.mkdir(parents=True, exist_ok=True)
    path = saver(build, out)
    npz = out.with_name(out.stem + ".inputs.npz")
    np.savez(npz, **build.example_inputs)
    return path, npz
