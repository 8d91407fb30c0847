"""Latency records: a slow model's latency comes from the calls parity made anyway."""

from __future__ import annotations

import time

import numpy as np

from forgeml.runtime.latency import TimedRunner, artifact_latency


def _sleeper(seconds: float):
    calls = []

    def run(inputs):
        calls.append(1)
        time.sleep(seconds)
        return {"y": inputs["x"]}

    return run, calls


def test_slow_runner_reuses_its_parity_calls():
    run, calls = _sleeper(0.06)
    timed = TimedRunner(run, slow_s=0.05)
    x = {"x": np.zeros((2, 4))}
    for _ in range(3):
        timed(x)
    rec = artifact_latency(timed, x)
    assert len(calls) == 3  # no warm-up, no extra runs
    assert rec["runs"] == 2 and rec["median_ms"] >= 60 and "parity" in rec["where"]


def test_fast_runner_is_measured_as_before():
    run, calls = _sleeper(0.0)
    timed = TimedRunner(run, slow_s=0.05)
    x = {"x": np.zeros((2, 4))}
    timed(x)
    timed({"x": np.zeros((3, 4))})  # another shape does not count
    rec = artifact_latency(timed, x)
    assert len(calls) > 2 and "where" not in rec and rec["runs"] >= 1


def test_a_single_slow_call_is_the_record():
    run, calls = _sleeper(0.06)
    timed = TimedRunner(run, slow_s=0.05)
    x = {"x": np.zeros((2, 4))}
    timed(x)
    rec = artifact_latency(timed, x)
    assert len(calls) == 1 and rec["runs"] == 1 and "one parity call" in rec["where"]


def test_default_threshold_spares_a_tenth_of_a_second_model_the_extra_runs():
    """A GGUF whose parity calls take ~0.3 s each lost ~2.5 s to a warm-up and seven more runs."""
    run, calls = _sleeper(0.12)
    timed = TimedRunner(run)
    x = {"x": np.zeros((2, 4))}
    timed(x)
    timed(x)
    rec = artifact_latency(timed, x)
    assert len(calls) == 2 and rec["runs"] == 1 and "parity" in rec["where"]
