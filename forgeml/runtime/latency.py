"""A small, honest latency number per artifact: the median of a few timed runs after one warm-up.

It is measured on the first parity input (the example batch) in this process, on this machine's CPU,
so it compares variants of one run with each other; it is not a benchmark (see bench/ for those).
The CPU count and the load average at the time are recorded with it, because on a loaded machine a
multi-threaded runtime (torch's intra-op pool) can be slower by orders of magnitude than on an idle one.
The number of runs is recorded beside the median, and runs stop early once ``budget_s`` is spent.
"""

from __future__ import annotations

import os
import statistics
import time

from forgeml.runtime import InputSet, Runner, SelfTimed


def artifact_latency(runner: Runner, inputs: InputSet) -> dict:
    """The latency of the artifact behind ``runner``.

    A runner whose calls do not execute the artifact here (it serves outputs computed up front in a
    fresh process, say) is ``SelfTimed``: its ``latency(inputs)`` gives its own timing, or a ``note``
    saying why there is none. Timing such a runner's calls would time a cache lookup.
    """
    if isinstance(runner, SelfTimed):
        return runner.latency(inputs)
    return measure_latency(runner, inputs)


def from_seconds(seconds: list[float], inputs: InputSet, where: str) -> dict:
    """The same record from per-call seconds a runtime measured elsewhere (``where`` says where)."""
    ms = [s * 1000.0 for s in seconds]
    return {"median_ms": round(statistics.median(ms), 4), "min_ms": round(min(ms), 4), "runs": len(ms),
            "inputs": {k: list(v.shape) for k, v in inputs.items()}, "cpus": os.cpu_count(), "where": where}


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
    out = {"median_ms": round(statistics.median(times), 4), "min_ms": round(min(times), 4),
           "runs": len(times), "inputs": batch, "cpus": os.cpu_count()}
    if hasattr(os, "getloadavg"):
        # A busy machine slows multi-threaded runtimes most (spinning threads): say how busy it was.
        out["load_1m"] = round(os.getloadavg()[0], 2)
    return out


class TimedRunner:
    """A runner that times its own calls, so a slow model's latency comes from the parity calls it
    made anyway instead of a warm-up and more runs (a 1 GB LLM spends a minute on those otherwise).

    Calls after the first (the warm-up) on inputs shaped like the ones asked about count (the first
    alone when it was the only one); when they took longer than ``slow_s`` each, they are the latency
    record, else it is measured as usual. The default 0.1 s: past it a measurement (a warm-up and up to
    seven runs) would add a second or more to a run whose parity calls already timed the same work —
    on a 1 GB GGUF that was a quarter of the whole conversion.
    """

    def __init__(self, runner: Runner, slow_s: float = 0.1):
        self.inner = runner
        self.slow_s = slow_s
        self.calls: list[tuple[tuple, float]] = []

    def __getattr__(self, name):  # the wrapped runner's attributes (``llm`` and the like)
        return getattr(self.inner, name)

    def __call__(self, inputs: InputSet):
        t0 = time.perf_counter()
        out = self.inner(inputs)
        self.calls.append((_shapes(inputs), time.perf_counter() - t0))
        return out

    def latency(self, inputs: InputSet) -> dict:
        own = getattr(self.inner, "latency", None)
        if callable(own):
            return own(inputs)
        same = [s for shape, s in self.calls if shape == _shapes(inputs)]
        seen, where = same[1:], "timed during the parity runs (slow model: no extra runs)"
        if not seen and same and same[0] > self.slow_s:  # one parity call only: it is the record
            seen, where = same, "the one parity call, first-call setup included (slow model: no extra runs)"
        if seen and min(seen) > self.slow_s:
            out = from_seconds(seen, inputs, where)
            if hasattr(os, "getloadavg"):
                out["load_1m"] = round(os.getloadavg()[0], 2)
            return out
        return measure_latency(self.inner, inputs)


def _shapes(inputs: InputSet) -> tuple:
    return tuple((k, tuple(getattr(v, "shape", ()))) for k, v in inputs.items())
