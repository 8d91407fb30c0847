"""Write a zoo model to a file in its own framework's format, plus its example inputs as .npz,
so the file routes (``forgeml convert model.pt2``) can be tried without writing any code.

Each saver declares the exact path it writes (``-o model.v2`` gives ``model.v2.pt2``, never a
rewritten suffix), so the existence check looks at exactly what would be replaced. Everything is
written in a temporary sibling directory first and moved into place with ``os.replace``: a failed
export leaves nothing half-written, and ``--force`` replaces a checkpoint directory rather than
merging into it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from models_zoo import ZOO, ZooBuild


def _save_torch(build: ZooBuild, path: Path) -> None:
    import torch

    args = tuple(torch.from_numpy(a) for a in build.example_inputs.values())
    torch.export.save(torch.export.export(build.model, args), str(path))


def _save_keras(build: ZooBuild, path: Path) -> None:
    build.model.save(str(path))


def _save_sklearn(build: ZooBuild, path: Path) -> None:
    import skops.io

    skops.io.dump(build.model, str(path))  # the safe format: loading it runs no pickle


def _save_hf(build: ZooBuild, path: Path) -> None:
    shutil.copytree(build.model, path)  # a Hugging Face checkpoint directory: config, tokenizer, safetensors


@dataclass(frozen=True)
class Saver:
    suffix: str  # appended to the stem; "" for a directory named like the stem
    write: Callable[[ZooBuild, Path], None]  # writes the model at exactly the path it is given


SAVERS = {"torch": Saver(".pt2", _save_torch), "tensorflow": Saver(".keras", _save_keras),
          "sklearn": Saver(".skops", _save_sklearn)}
SAVERS["hf"] = Saver("", _save_hf)


def _saver(name: str) -> Saver:
    entry = ZOO[name]
    saver = SAVERS.get(entry.kind)
    if saver is None:
        raise KeyError(f"zoo:{name} is a {entry.kind} model; export knows {', '.join(SAVERS)}")
    return saver


def output_paths(name: str, out: Path) -> tuple[Path, Path]:
    """(model path, example inputs .npz) that ``export(name, out)`` writes — and would replace."""
    suffix = _saver(name).suffix
    stem = Path(out)
    if suffix and stem.name.endswith(suffix) and stem.name != suffix:  # -o mlp.pt2 means the file mlp.pt2
        stem = stem.with_name(stem.name[: -len(suffix)])
    return stem.with_name(stem.name + suffix), stem.with_name(stem.name + ".inputs.npz")


def _swap_in(new: Path, final: Path) -> None:
    """Move ``new`` onto ``final`` with os.replace; an old file or directory there is moved aside first."""
    old = None
    if final.exists() or final.is_symlink():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(new, final)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()


def export(name: str, out: Path, *, force: bool = False) -> tuple[Path, Path]:
    """Returns (model file, example inputs .npz); raises FileExistsError for an existing one without force."""
    saver = _saver(name)
    path, npz = output_paths(name, out)
    existing = [str(p) for p in (path, npz) if p.exists() or p.is_symlink()]
    if existing and not force:
        raise FileExistsError(f"{' and '.join(existing)} already exist(s); pass --force to replace")
    build = ZOO[name].build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        saver.write(build, tmp / path.name)
        np.savez(tmp / npz.name, **build.example_inputs)
        _swap_in(tmp / path.name, path)
        _swap_in(tmp / npz.name, npz)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path, npz
