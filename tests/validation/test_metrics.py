"""Metrics and tolerance judgement on arrays with known differences."""

from __future__ import annotations

import numpy as np
import pytest

from forgeml.parity.metrics import OutputAccumulator
from forgeml.parity.measure import measure
from forgeml.parity.tolerances import PROFILES


def _row(ref, cand, profile="fp32"):
    acc = OutputAccumulator("y")
    acc.add(ref, cand, PROFILES[profile].rtol)
    return acc.row(PROFILES[profile])


def test_identical_outputs_pass_with_zero_error():
    ref = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    row = _row(ref, ref.copy())
    assert row["passed"] and row["max_abs"] == 0 and row["cosine"] == pytest.approx(1.0) and row["top1"] == 1.0


def test_errors_are_measured_exactly():
    ref = np.zeros((2, 3), np.float32) + np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    cand = ref.copy()
    cand[1, 2] += 0.5  # 6 -> 6.5
    row = _row(ref, cand)
    assert row["max_abs"] == pytest.approx(0.5)
    assert row["max_rel"] == pytest.approx(0.5 / 6)
    assert row["mean_abs"] == pytest.approx(0.5 / 6)
    assert row["atol_needed"] == pytest.approx(0.5 - 1e-3 * 6)
    assert not row["passed"] and "max abs error" in row["problem"]


def test_fp32_tolerance_edges():
    ref = np.full((3, 4), 10.0, np.float32)
    within = ref + 1e-4 + 1e-3 * 10 - 1e-6  # just inside atol + rtol*|ref|
    beyond = ref + 1e-4 + 1e-3 * 10 + 1e-4
    assert _row(ref, within.astype(np.float32))["passed"]
    assert not _row(ref, beyond.astype(np.float32))["passed"]


def test_centered_cosine_sees_what_plain_cosine_hides():
    """A big constant offset plus a small input-dependent part: ruin the small part only."""
    rng = np.random.default_rng(1)
    base = np.full((16, 8), 100.0)
    signal = rng.normal(scale=0.01, size=(16, 8))
    ref = base + signal
    cand = base + rng.normal(scale=0.01, size=(16, 8))  # the input-dependent part is noise now
    row = _row(ref, cand, "int8")
    assert row["cosine"] > 0.9999
    assert row["centered_cosine"] < 0.5
    assert not row["passed"] and "centered cosine" in row["problem"]


def test_top1_agreement_counts_flips():
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    cand = ref.copy()
    cand[0] = [0.0, 1.0]
    assert _row(ref, cand, "int8")["top1"] == pytest.approx(0.75)


def test_shape_mismatch_and_nan_fail_with_a_reason():
    ref = np.ones((2, 3), np.float32)
    row = _row(ref, np.ones((3, 2), np.float32))
    assert not row["passed"] and "shape" in row["problem"]
    cand = ref.copy()
    cand[0, 0] = np.nan
    row = _row(ref, cand)
    assert not row["passed"] and "non-finite" in row["problem"]


def test_integer_outputs_need_exact_agreement():
    ref = np.array([0, 1, 2, 1])
    row = _row(ref, np.array([0, 1, 2, 2]))
    assert row["exact_match"] == pytest.approx(0.75) and not row["passed"]
    assert _row(ref, ref.copy())["passed"]


def test_measure_reports_missing_outputs():
    ref = [{"a": np.ones((2, 2), np.float32), "b": np.zeros((2,), np.float32)}]
    par = measure(ref, lambda inputs: {"a": np.ones((2, 2), np.float32)}, [{}], PROFILES["fp32"],
                  reference="test", output_names=["a", "b"])
    assert not par.passed and par.failing_outputs() == ["b"]
