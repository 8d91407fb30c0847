"""Atomic file and directory writes: a reader never sees a half-written artifact."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import secrets
from pathlib import Path

from forgeml.errors import InputError


@contextlib.contextmanager
def atomic_writer(path: Path):
    """A binary file handle whose content appears at ``path`` only if the block completes."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)


def write_json_atomic(path: Path, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def check_out_dir(out_dir: Path, force: bool, protect: tuple[Path, ...] = ()) -> None:
    """An existing non-empty output is never overwritten without `force`, and never one that holds
    the working directory or a ``protect``ed path (the source), which replacing it would delete."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output {out_dir} exists and is not a directory")
    target = out_dir.resolve()
    for keep in (Path.cwd(), *protect):
        keep = Path(keep).resolve()
        if target == keep or target in keep.parents:
            what = "the working directory" if keep == Path.cwd().resolve() else f"the source {keep}"
            raise InputError(f"output directory {out_dir} holds {what}, which replacing it would delete; "
                             "choose a new directory for -o")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise InputError(f"output directory {out_dir} already exists and is not empty; pass `force` to replace it")


class StagedDir:
    """Build an output directory beside its final place and swap it in only when done.

    ``commit()`` renames the staging dir onto ``final`` (replacing an old one, which `force` allowed);
    ``discard()`` removes it, leaving ``final`` exactly as it was.
    """

    def __init__(self, final: Path):
        self.final = final = final.resolve()
        final.parent.mkdir(parents=True, exist_ok=True)
        # mkdir (not mkdtemp, which makes it 0700) so the output gets the user's usual permissions.
        while True:
            self.path = final.parent / f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
            try:
                self.path.mkdir()
                break
            except FileExistsError:
                continue

    def commit(self) -> Path:
        old = None
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}.old-{os.getpid()}")
            os.replace(self.final, old)
        os.replace(self.path, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
