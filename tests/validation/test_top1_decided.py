"""GGUF profiles judge top-1 on decided positions: ties say nothing about the file, flips of clear
leads do. Logits are built in code (seeded), the verdicts computed by the real accumulator."""

from __future__ import annotations

import numpy as np

from forgeml.parity.metrics import OutputAccumulator
from forgeml.parity.tolerances import profile_for


def _row(ref, cand, profile):
    tol = profile_for(profile)
    acc = OutputAccumulator("logits")
    acc.add(ref, cand, tol.rtol)
    return acc.row(tol)


def _tied(seed=0):
    """Flat-topped logits: 4 tokens share the lead up to 1e-3; the candidate adds 1e-2 noise."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(256)
    base[:4] = base.max() + 1.0
    ref = base + 1e-3 * rng.standard_normal((2, 32, 256))
    return ref.astype(np.float32), (ref + 1e-2 * rng.standard_normal(ref.shape)).astype(np.float32)


def test_ties_are_not_judged_but_warned_about():
    ref, cand = _tied()
    row = _row(ref, cand, "gguf-q8_0")
    assert row["top1"] < 0.95  # raw top-1 is a coin toss among the tied tokens ...
    assert row["top1_decided"] < 16 and row["top1_judged"] == "not judged"
    assert row["passed"] and "top-1 not judged" in row["warning"]  # ... and neither passes nor fails the file
    raw = _row(ref, cand, "int8")  # a raw-top-1 profile fails the same numbers
    assert not raw["passed"] and "top-1 agreement" in raw["problem"]


def test_flipped_clear_leads_fail_with_both_numbers():
    rng = np.random.default_rng(1)
    ref = (3.0 * rng.standard_normal((2, 32, 256))).astype(np.float32)
    cand = ref + (1e-2 * rng.standard_normal(ref.shape)).astype(np.float32)
    ok = _row(ref, cand, "gguf-q8_0")
    assert ok["passed"] and ok["top1_judged"] == "decided" and ok["top1_margin"] == 1.0
    flat = cand.reshape(-1, 256)
    order = np.argsort(flat, axis=-1)
    for i in range(0, 64, 6):  # swap top-1 and top-2 on 11 of the 64 positions
        a, b = order[i, -1], order[i, -2]
        flat[i, a], flat[i, b] = flat[i, b], flat[i, a]
    bad = _row(ref, flat.reshape(ref.shape), "gguf-q8_0")
    assert bad["top1_decided"] >= 16 and bad["top1_margin"] < 0.95
    assert not bad["passed"] and "decided positions" in bad["problem"] and "raw top-1" in bad["problem"]


def test_profiles_describe_the_rule():
    assert "decided positions" in profile_for("gguf-f16").describe()
    assert "decided" not in profile_for("int8").describe()
