"""A small, honest latency number per artifact: the median of a few timed runs after one warm-up.

It is measured on the first parity input (the example batch) in this process, on this machine's CPU,
so it compares variants of one run with each other; it is not a benchmark (see bench/ for those).
The number of runs is recorded beside the median, and runs stop early once ``budget_s`` is spent.
"""

from __future__ import annotations

import statistics
import time

from forgeml.validation import InputSet, Runner


def measure_latency(runner: Runner, inputs: InputSet, *, runs: int = 7, budget_s: float = 2.0) -> dict:
    runner(inputs)  # warm-up: first-call allocations and lazy initialisation are not latency
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(runs):
        t0 = time.perf_counter()
        runner(inputs)
        times.append((time.perf_counter() - t0) * 1000.0)
        if time.perf_counter() - start > budget_s:
            break
    batch = {k: list(v.shape) for k, v in inputs.items()}
    return {"median_ms": round(statistics.median(times), 4), "min_ms": round(min(times), 4),
            "runs": len(times), "inputs": batch}
