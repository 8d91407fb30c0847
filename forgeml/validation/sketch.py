"""A small picture of one output's errors, kept in the manifest so report.html can draw it.

Two things a reviewer would rather look at than read: where the errors fall (a histogram of
``log10 |candidate - reference|`` over *every* element, in fixed bins so two runs compare bin by bin)
and how the candidate tracks the reference (a deterministic sample of at most ``SAMPLE`` value pairs).
Both are bounded in size whatever the model, so the manifest stays small.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LO, HI, STEP = -12.0, 4.0, 0.5  # log10 bins of |error|: 1e-12 … 1e4 (errors outside are clamped)
SAMPLE = 128


def _round(v: float) -> float:
    return float(f"{v:.6g}")


@dataclass
class ErrorSketch:
    counts: np.ndarray = field(default_factory=lambda: np.zeros(int((HI - LO) / STEP), dtype=np.int64))
    zeros: int = 0
    ref: list[float] = field(default_factory=list)
    cand: list[float] = field(default_factory=list)
    total: int = 0

    def add(self, ref: np.ndarray, cand: np.ndarray, per_batch: int) -> None:
        r = np.asarray(ref, dtype=np.float64).ravel()
        c = np.asarray(cand, dtype=np.float64).ravel()
        if r.shape != c.shape or r.size == 0 or ref.dtype.kind not in "f" or cand.dtype.kind not in "f":
            return
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
            self.ref += [_round(v) for v in r[pick]]
            self.cand += [_round(v) for v in c[pick]]

    def to_json(self) -> dict | None:
        if not self.total:
            return None
        return {"hist": {"log10_lo": LO, "step": STEP, "counts": self.counts.tolist(), "zeros": self.zeros},
                "elements": self.total, "sample": {"reference": self.ref, "candidate": self.cand}}
