"""Undecided rather than FAIL: a quantized file judged against the noise its own weight type causes.

On a model whose logits carry little signal (random weights, many layers in the chaotic regime) the
rounding of a q8_0 or q4 file alone moves the logits by as much as they differ: a 47-layer random
llama (hidden 5120, N(0, 0.02)) gets cosine 0.98 in llama.cpp against float32 transformers, and the
same transformers model run on the file's rounded weights gets 0.989 (docs/gguf.md). A cosine
threshold then judges the model's sensitivity, not the file, and no position is decided for top-1.

The rule: when a stage fails on cosine alone and top-1 was not judged (too few decided positions),
the source framework is run once more with every weight rounded as the file stores it (the "noise
floor": what the weight type alone does to this model), and the candidate's RMS logit error is
compared with the floor's. Within ``FACTOR`` times the floor (llama.cpp also rounds activations for
its quantized dot products, which the floor does not), the row is ``undecided``: it does not fail,
and it carries a warning saying why (``--fail-on warn`` makes that exit 1). Beyond it the file does
more than its weight type explains and the row fails, saying so. A broken file (a wrong permutation,
a tensor in the wrong place) lands far beyond: its errors are of the logits' own size.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from forgeml.parity.measure import ParityRow, StageParity
from forgeml.parity.tolerances import Tolerance

FACTOR = 2.0


def _cosine_only(row: ParityRow, tol: Tolerance) -> bool:
    """The row failed on cosine and nothing else, with top-1 not judged."""
    return (not row.passed and row.top1_judged == "not judged" and row.cosine is not None
            and row.top1_noise is not None and row.problem == f"cosine {row.cosine:.6f} < {tol.min_cosine:g}")


def needs_floor(parity: StageParity) -> bool:
    """A stage judged by decided top-1 (the GGUF profiles) without an elementwise rule (a quantized
    type) that fails only on rows like that."""
    tol = parity.profile
    return (not parity.passed and tol.top1_on == "decided" and tol.atol is None and bool(parity.rows)
            and all(r.passed or _cosine_only(r, tol) for r in parity.rows))


def rms_error(reference: Sequence[dict], other: Sequence[dict], output: str) -> float:
    """RMS difference of one output over every input set."""
    sq = n = 0.0
    for r, o in zip(reference, other):
        d = np.asarray(o[output], dtype=np.float64) - np.asarray(r[output], dtype=np.float64)
        sq += float(np.sum(d * d))
        n += d.size
    return (sq / n) ** 0.5 if n else 0.0


def judge_with_floor(parity: StageParity, reference: Sequence[dict], floor: Sequence[dict],
                     factor: float = FACTOR) -> StageParity:
    """``parity`` with each cosine-only failure re-judged against the floor's RMS error."""
    rows = []
    for row in parity.rows:
        if not _cosine_only(row, parity.profile):
            rows.append(row)
            continue
        base = rms_error(reference, floor, row.output)
        err = float(row.top1_noise)  # the stage's RMS logit error against the reference
        within = err <= factor * base
        why = (f"RMS logit error {err:.3g} vs {base:.3g} for the source framework on the file's rounded weights "
               f"(limit {factor:g}x)")
        if within:
            rows.append(dataclasses.replace(
                row, passed=True, verdict="undecided", noise_floor=base, problem=None,
                warning=f"undecided: {row.problem}, but the weight type's own rounding explains it ({why}); "
                        f"{row.warning or 'top-1 not judged'}"))
        else:
            rows.append(dataclasses.replace(row, noise_floor=base,
                                            problem=f"{row.problem}; beyond the weight type's noise: {why}"))
    return dataclasses.replace(parity, rows=rows, passed=all(r.passed for r in rows))
