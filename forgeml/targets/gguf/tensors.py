"""Source tensors for the GGUF writer, a slice at a time: safetensors files (read by row ranges, see
``forgeml.formats.safetensors_rows``) or an in-memory state dict."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from forgeml.formats.safetensors_rows import SafetensorsSource  # noqa: F401  (re-exported: a TensorSource)


class TensorSource(Protocol):
    """Named float tensors, fetched one at a time."""

    def names(self) -> list[str]: ...

    def shape(self, name: str) -> tuple[int, ...]: ...

    def get(self, name: str) -> np.ndarray:
        """The tensor as float32 (a fresh array the caller may keep or drop)."""

    def get_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (first axis) as float32, reading only those rows."""

    def nbytes(self, name: str) -> int:
        """The tensor's size in the source (for throughput figures)."""


class StateDictSource:
    """An in-memory transformers model's parameters (already resident, so nothing to bound)."""

    def __init__(self, model):
        self._state = model.state_dict()

    def names(self) -> list[str]:
        return list(self._state)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._state[name].shape)

    def source_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._state.values())

    def nbytes(self, name: str) -> int:
        return self._state[name].numel() * self._state[name].element_size()

    def get(self, name: str) -> np.ndarray:
        return self._state[name].detach().cpu().float().numpy().copy()

    def get_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        return self._state[name][start:stop].detach().cpu().float().numpy().copy()
