"""A small picture of one output's errors, kept in the manifest so report.html can draw it.

Two things a reviewer would rather look at than read: where the errors fall (a histogram of
``log10 |candidate - reference|`` over *every* element, in fixed bins so two runs compare bin by bin)
and how the candidate tracks the reference (a deterministic sample of at most ``SAMPLE`` value pairs).
Both are bounded in size whatever the model, so the manifest stays small.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import numpy as np

LO, HI, STEP = -12.0, 4.0, 0.5  # log10 bins of |error|: 1e-12 … 1e4 (errors outside are clamped)
SAMPLE = 128


@dataclass
class ErrorSketch:
    counts: np.ndarray = field(default_factory=lambda: np.zeros(int((HI - LO) / STEP), dtype=np.int64))
    zeros: int = 0
    ref: list[float] = field(default_factory=list)
    cand: list[float] = field(default_factory=list)
    total: int = 0

    def add(self, ref: np.ndarray, cand: np.ndarray, per_batch: int) -> None:
        ref, cand = np.asarray(ref), np.asarray(cand)
        if ref.shape != cand.shape or ref.size == 0 or ref.dtype.kind != "f" or cand.dtype.kind != "f":
            return  # labels, ids and strings are judged by exact match; there is no error to draw
        r = ref.astype(np.float64).ravel()
        c = cand.astype(np.float64).ravel()
        ok = np.isfinite(r) & np.isfinite(c)
        d = np.abs(c[ok] - r[ok])
        self.total += int(d.size)
        self.zeros += int(np.sum(d == 0))
        nz = d[d > 0]
        if nz.size:
            idx = np.clip(((np.log10(nz) - LO) / STEP).astype(np.int64), 0, len(self.counts) - 1)
            self.counts += np.bincount(idx, minlength=len(self.counts))
        take = min(per_batch, SAMPLE - len(self.ref), r.size)
        if take > 0:
            pick = np.linspace(0, r.size - 1, take).round().astype(np.int64)
            pick = pick[ok[pick]]
            self.ref += r[pick].tolist()
            self.cand += c[pick].tolist()

    def to_json(self) -> dict | None:
        """Compact on purpose: only the occupied bins, and the sample as base64 float32 (one line each)."""
        if not self.total:
            return None
        nz = np.flatnonzero(self.counts)
        first, last = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0)
        return {"hist": {"log10_lo": LO + first * STEP, "step": STEP, "counts": self.counts[first:last].tolist(),
                         "zeros": self.zeros},
                "elements": self.total, "sample_f32": {"reference": _b64(self.ref), "candidate": _b64(self.cand)}}


def _b64(values: list[float]) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


def sample_values(sketch: dict) -> tuple[list[float], list[float]]:
    """The (reference, candidate) sample of a sketch as written by ``to_json``."""
    s = sketch.get("sample_f32", {})
    dec = [np.frombuffer(base64.b64decode(s.get(k, "")), dtype="<f4").tolist() for k in ("reference", "candidate")]
    return dec[0], dec[1]
