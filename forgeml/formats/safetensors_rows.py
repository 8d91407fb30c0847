"""Float tensors of safetensors files, a slice of rows at a time, without loading a file.

Safetensors data is read with plain positioned reads of just the rows asked for, straight into the
result's buffer, so a reader (the GGUF writer, a streamed reference model) can stream a tensor in
chunks and memory stays near one chunk, not one checkpoint (nor one 100 MB embedding). Every header
is parsed and checked against the file size first, so a corrupt or truncated file fails with one
clear error before any output exists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forgeml.errors import InputError
from forgeml.formats.safetensors import ITEM_BYTES, TensorEntry, read_header

_NUMPY_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "BF16": "<u2"}


class SafetensorsSource:
    def __init__(self, files: list[Path]):
        self._entries: dict[str, TensorEntry] = {}
        for f in files:
            for name, entry in read_header(f).tensors.items():
                self._entries[name] = entry

    def names(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name].shape

    def source_bytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def nbytes(self, name: str) -> int:
        return self._entries[name].nbytes

    def get(self, name: str) -> np.ndarray:
        e = self._entries[name]
        return self.get_rows(name, 0, e.shape[0]) if e.shape else self._read(e, 0, 1).reshape(())

    def get_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        e = self._entries[name]
        row_elems = int(np.prod(e.shape[1:])) if len(e.shape) > 1 else 1
        return self._read(e, start * row_elems, stop * row_elems).reshape((stop - start, *e.shape[1:]))

    def stored_dtype(self, name: str) -> str:
        """The safetensors dtype name the tensor is stored in (F16, BF16, F32 …)."""
        return self._entries[name].dtype

    def get_rows_stored(self, name: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Rows as stored (float16 stays float16; BF16 comes as its raw uint16 bits): for writers that keep
        the source's own values and need no float32 copy."""
        e = self._entries[name]
        start, stop = (0, e.shape[0]) if start is None else (start, stop)
        row_elems = int(np.prod(e.shape[1:])) if len(e.shape) > 1 else 1
        raw = self._read(e, start * row_elems, stop * row_elems, widen=False)
        return raw.reshape((stop - start, *e.shape[1:]))

    @staticmethod
    def _read(e: TensorEntry, first: int, last: int, widen: bool = True) -> np.ndarray:
        """Elements ``first:last`` of the flattened tensor, read with plain file I/O into a fresh array.

        Plain reads rather than a kept-open memory map: mapped pages that were touched stay resident
        (and count in RSS) until unmapped, so a whole-file mapping grows to the checkpoint's size.
        """
        if e.dtype not in _NUMPY_DTYPES:
            raise InputError(f"{e.file}: a tensor has dtype {e.dtype}; GGUF conversion reads float tensors")
        item = ITEM_BYTES[e.dtype]
        raw = np.empty(last - first, dtype="<u2" if e.dtype == "BF16" else _NUMPY_DTYPES[e.dtype])
        with open(e.file, "rb", buffering=0) as f:  # straight into the array: no intermediate bytes copy
            f.seek(e.start + first * item)
            view, got = memoryview(raw).cast("B"), 0
            while got < len(view):  # one read(2) returns at most ~2 GiB
                n = f.readinto(view[got:])
                if not n:
                    break
                got += n
        if got != (last - first) * item:
            raise InputError(f"{e.file}: ends inside a tensor's data (truncated file)")
        if not widen:
            return raw
        if e.dtype == "BF16":  # numpy has no bfloat16: widen the raw halves (bf16 is the top half of f32)
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32)
