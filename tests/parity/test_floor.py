"""The noise-floor rule (forgeml/parity/floor.py): a quantized GGUF stage failing on cosine alone with
top-1 undecided is undecided when the weight type's own rounding explains its error, and fails otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from forgeml.parity.floor import judge_with_floor, needs_floor
from forgeml.parity.measure import measure
from forgeml.parity.tolerances import profile_for


def _flat_logits(seed: int, shape=(2, 32, 400)) -> np.ndarray:
    """Random logits with little signal: top-1/top-2 gaps are small against the error added below."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.3


def _stage(noise: float):
    """A q8_0 stage whose candidate is the reference plus ``noise`` RMS of error; its parity and outputs."""
    ref = [{"logits": _flat_logits(0)}]
    cand = {"logits": ref[0]["logits"] + np.random.default_rng(1).standard_normal(ref[0]["logits"].shape)
            .astype(np.float32) * noise}
    parity = measure(ref, lambda inputs: cand, [{"input_ids": np.zeros((2, 32), np.int64)}],
                     profile_for("gguf-q8_0"), reference="test", output_names=["logits"])
    return parity, ref


def _floor(ref, noise: float):
    return [{"logits": ref[0]["logits"] + np.random.default_rng(2).standard_normal(ref[0]["logits"].shape)
             .astype(np.float32) * noise}]


def test_cosine_failure_within_the_floor_is_undecided():
    parity, ref = _stage(0.06)
    row = parity.rows[0]
    assert not parity.passed and row.top1_judged == "not judged" and "cosine" in row.problem
    assert needs_floor(parity)
    judged = judge_with_floor(parity, ref, _floor(ref, 0.05))
    row = judged.rows[0]
    assert judged.passed and row.verdict == "undecided" and row.problem is None
    assert row.noise_floor == pytest.approx(0.05, rel=0.05) and "undecided: cosine" in row.warning


def test_cosine_failure_beyond_the_floor_still_fails():
    parity, ref = _stage(0.3)
    judged = judge_with_floor(parity, ref, _floor(ref, 0.05))
    row = judged.rows[0]
    assert not judged.passed and row.verdict is None and "beyond the weight type's noise" in row.problem


def test_a_passing_or_decided_stage_needs_no_floor():
    parity, _ = _stage(0.001)
    assert parity.passed and not needs_floor(parity)
    f16 = measure([{"logits": _flat_logits(0)}], lambda i: {"logits": _flat_logits(5)},
                  [{"input_ids": np.zeros((2, 32), np.int64)}], profile_for("gguf-f32"), reference="t",
                  output_names=["logits"])
    assert not f16.passed and not needs_floor(f16)  # an elementwise profile: no floor rule
