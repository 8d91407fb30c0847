"""The error sketch kept per output: counts every element, stays small whatever the output size."""

from __future__ import annotations

import json

import numpy as np

from forgeml.parity.measure import measure
from forgeml.parity.sketch import SAMPLE, ErrorSketch, sample_values
from forgeml.parity.tolerances import profile_for


def test_histogram_counts_every_element_in_the_right_bin():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(4, 1000)).astype(np.float32)
    err = np.float32(10.0) ** rng.integers(-9, -1, size=ref.shape).astype(np.float32)
    cand = ref + err
    sk = ErrorSketch()
    sk.add(ref, cand, per_batch=SAMPLE)
    j = sk.to_json()
    h = j["hist"]
    assert sum(h["counts"]) + h["zeros"] == j["elements"] == ref.size
    # the measured errors, binned independently, land in the same bins
    d = np.abs(cand.astype(np.float64) - ref.astype(np.float64))
    d = d[d > 0]
    idx = np.floor((np.log10(d) - h["log10_lo"]) / h["step"]).astype(int)
    assert np.array_equal(np.bincount(idx, minlength=len(h["counts"]))[: len(h["counts"])], h["counts"])


def test_sample_is_real_pairs_and_size_is_bounded():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(8, 250_000)).astype(np.float32)
    cand = ref * np.float32(1.001)
    p = measure([{"y": ref}], lambda _: {"y": cand}, [{"x": np.zeros(1)}], profile_for("fp16"), reference="ref",
                output_names=["y"])
    sk = p.sketches["y"]
    r, c = sample_values(sk)
    assert 0 < len(r) == len(c) <= SAMPLE
    flat_r, flat_c = ref.ravel(), cand.ravel()
    for a, b in zip(r, c):
        i = np.flatnonzero(flat_r == np.float32(a))[0]
        assert flat_c[i] == np.float32(b)
    assert len(json.dumps(p.to_json())) < 6000  # two million elements, a few kB of manifest


def test_integer_and_string_outputs_have_no_sketch():
    for a in (np.arange(6).reshape(2, 3), np.array(["setosa", "virginica"], dtype=object)):
        p = measure([{"y": a}], lambda _, a=a: {"y": a}, [{"x": a}], profile_for("fp32"), reference="ref",
                    output_names=["y"])
        assert p.passed and "sketches" not in p.to_json()
