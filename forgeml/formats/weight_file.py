"""A scratch ONNX external-data file written a tensor at a time, whose tensors map back as ``onnx_ir``
external tensors: where a pass puts the weights it makes for a model past protobuf's 2 GB limit.

A precision pass on such a model (``passes/precision/streamed.py``) never holds its new weights, nor
the float ones, all at once: each is computed from the mapped source in row blocks and appended here
(64 KiB aligned, so onnxruntime maps it), and the model it returns names this file. The file lives in
a private directory ``forgeml-weights-<pid>-<hex>`` under the temp dir, ``flock``-ed by its process,
and is removed when the last tensor that names it is garbage collected (or at exit). One left by a
killed run (pid gone, lock free) is removed by the next ``WeightFile``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from forgeml.fileio import _alive, _lock_dir

ALIGN = 1 << 16
DATA_NAME = "weights.onnx.data"
_OURS = re.compile(r"forgeml-weights-(?P<pid>\d+)-[0-9a-z_]+")


def _sweep(parent: Path) -> None:
    for p in parent.glob("forgeml-weights-*"):
        m = _OURS.fullmatch(p.name)
        if not m or p.is_symlink() or not p.is_dir() or int(m["pid"]) == os.getpid() or _alive(int(m["pid"])):
            continue
        try:
            fd = _lock_dir(p, block=False)
        except OSError:
            continue
        if fd is not None:
            shutil.rmtree(p, ignore_errors=True)
            os.close(fd)


def _remove(path: str, fd: int) -> None:
    shutil.rmtree(path, ignore_errors=True)
    try:
        os.close(fd)
    except OSError:
        pass


class WeightFile:
    """Append tensors (``add``), then ``close()``; each ``add`` returns the tensor mapped from the file.

    Every returned tensor keeps this object alive, so the directory outlives every model (and clone)
    that names it, and goes with the last of them."""

    def __init__(self, parent: str | os.PathLike | None = None):
        base = Path(parent or tempfile.gettempdir())
        _sweep(base)
        self.dir = Path(tempfile.mkdtemp(prefix=f"forgeml-weights-{os.getpid()}-", dir=base))
        lock = _lock_dir(self.dir, block=True)
        self._finalizer = weakref.finalize(self, _remove, str(self.dir), lock)
        self.path = self.dir / DATA_NAME
        self._f = open(self.path, "wb")
        self.bytes = 0

    def add(self, name: str, dtype, shape: Sequence[int], blocks: Iterable[np.ndarray]):
        """Write ``blocks`` (C-order pieces of the tensor, first to last) at the next aligned offset;
        returns an ``onnx_ir.ExternalTensor`` of ``dtype`` (an ``onnx_ir.DataType``) and ``shape``."""
        import onnx_ir

        f = self._f
        offset = -f.tell() % ALIGN + f.tell()
        f.seek(offset)
        for block in blocks:
            f.write(memoryview(np.ascontiguousarray(block)).cast("B"))
        length = f.tell() - offset
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if length != expected:
            raise ValueError(f"{name}: wrote {length} bytes for a {dtype.name} {list(shape)} tensor of {expected}")
        self.bytes = f.tell()
        tensor = _Mapped(DATA_NAME, offset, length, dtype, shape=onnx_ir.Shape(list(shape)), name=name,
                         base_dir=self.dir)
        tensor.owner = self
        return tensor

    def copy(self, name: str, tensor, rows: int = 1 << 20):
        """An existing tensor (mapped or in memory) copied in unchanged, about ``rows`` elements at a time."""
        a = tensor.numpy()
        flat = a.reshape(-1)
        out = self.add(name, tensor.dtype, tuple(a.shape), (flat[i:i + rows] for i in range(0, flat.size, rows)))
        del a, flat
        release(tensor)
        return out

    def close(self) -> None:
        """Flush the file: from here its tensors may be read."""
        if not self._f.closed:
            self._f.flush()
            self._f.close()


def release(tensor) -> None:
    """Unmap a mapped source tensor once read, so its pages leave the process's resident set."""
    import onnx_ir

    if isinstance(tensor, onnx_ir.ExternalTensor):
        try:
            tensor.release()
        except BufferError:  # an array still reads it
            pass


def _mapped_class():
    import onnx_ir

    class Mapped(onnx_ir.ExternalTensor):
        """An external tensor that keeps its ``WeightFile`` (and so its directory) alive."""

        owner: WeightFile | None = None

    return Mapped


class _LazyClass:
    """``onnx_ir`` is imported on first use, not when ``forgeml.formats`` is."""

    cls = None

    def __call__(self, *args, **kwargs):
        if _LazyClass.cls is None:
            _LazyClass.cls = _mapped_class()
        return _LazyClass.cls(*args, **kwargs)


_Mapped = _LazyClass()
