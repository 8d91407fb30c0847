"""forgeml batch: the same 40 jobs (zoo models × targets × quantize modes) on the embedded Ray instance
with 1 worker and with 2, timed wall to wall (Ray's start and stop included), and checked job by job:
both runs must give the same verdict and byte-identical artifacts (sha256).

Each job runs in a fresh worker process, which imports its framework again (torch, TensorFlow,
scikit-learn): that start-up is part of every job's cost and of what a second worker overlaps.
On a machine shared with other work the ratio measures the CPUs left over, so the machine line
(CPU, flags, load) comes first.

    python bench/batch.py                 # 40 jobs, 1 worker then 2
    python bench/batch.py --quick         # 8 jobs
    python bench/batch.py --in-process    # also a sequential run in this process (--cluster none)
"""

from __future__ import annotations

from forgeml.runtime.machine import print_machine

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (zoo model, targets, quantize modes): 3×2×4 + 2×4 + 4×2 = 40 jobs
MATRIX = [
    ("mlp", ["onnx", "safetensors"], ["none", "fp16", "int8", "int4"]),
    ("cnn", ["onnx", "safetensors"], ["none", "fp16", "int8", "int4"]),
    ("transformer", ["onnx", "safetensors"], ["none", "fp16", "int8", "int4"]),
    ("keras_cnn", ["onnx"], ["none", "fp16", "int8", "int4"]),
    ("keras_two_inputs", ["onnx"], ["none", "fp16", "int8", "int4"]),
    ("sk_iris", ["onnx"], ["none", "fp16"]),
    ("sk_digits", ["onnx"], ["none", "fp16"]),
    ("sk_diabetes", ["onnx"], ["none", "fp16"]),
    ("sk_breast_cancer", ["onnx"], ["none", "fp16"]),
]
QUICK = [("mlp", ["onnx", "safetensors"], ["none", "int8"]), ("cnn", ["onnx"], ["none", "int8"]),
         ("sk_iris", ["onnx"], ["none", "int8"])]


def job_file(matrix, folder: Path) -> Path:
    lines = ["parity_batches: 1", "models:"]
    for name, targets, modes in matrix:
        lines += [f"  - src: zoo:{name}", f"    targets: [{', '.join(targets)}]", f"    quantize: [{', '.join(modes)}]"]
    path = folder / "jobs.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def timed(jobs: Path, out: Path, cluster: str, workers: int | None):
    from forgeml.batch import BatchOptions, run_batch

    t0 = time.perf_counter()
    result = run_batch(jobs, out, BatchOptions(cluster=cluster, max_parallel=workers))
    return result, time.perf_counter() - t0


def agree(a, b) -> tuple[int, int, list[str]]:
    """(verdicts equal, artifact sets equal, the ids that differ)"""
    other = {r.id: r for r in b.records}
    same_verdict = same_bytes = 0
    differ = []
    for r in a.records:
        o = other[r.id]
        v = r.verdict == o.verdict
        h = [x.sha256 for x in r.artifacts] == [x.sha256 for x in o.artifacts]
        same_verdict += v
        same_bytes += h
        if not (v and h):
            differ.append(f"{r.id}: {r.verdict}/{o.verdict}")
    return same_verdict, same_bytes, differ


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8 jobs instead of 40")
    ap.add_argument("--in-process", action="store_true", help="also run the jobs one by one in this process")
    args = ap.parse_args()
    print_machine()
    with tempfile.TemporaryDirectory(prefix="forgeml-bench-batch-") as tmp:
        folder = Path(tmp)
        jobs = job_file(QUICK if args.quick else MATRIX, folder)
        runs = {}
        if args.in_process:
            runs["in-process"] = timed(jobs, folder / "none", "none", None)
        runs["1 worker"] = timed(jobs, folder / "w1", "local", 1)
        runs["2 workers"] = timed(jobs, folder / "w2", "local", 2)
        n = len(runs["1 worker"][0].records)
        print(f"{n} jobs (zoo × targets × quantize), parity_batches 1, a fresh Ray worker per job")
        print(f"{'run':12} {'wall s':>8} {'s/job':>7}  verdicts")
        for name, (result, wall) in runs.items():
            counts = ", ".join(f"{c} {v}" for v, c in result.summary["counts"].items() if c)
            print(f"{name:12} {wall:8.1f} {wall / n:7.2f}  {counts}")
        t1, t2 = runs["1 worker"][1], runs["2 workers"][1]
        print(f"wall time 2 workers / 1 worker: {t2 / t1:.2f} (speed-up {t1 / t2:.2f}x)")
        base = runs["1 worker"][0]
        for name, (result, _) in runs.items():
            if name == "1 worker":
                continue
            v, h, differ = agree(base, result)
            print(f"{name} vs 1 worker: same verdict {v}/{n}, same artifact bytes {h}/{n}"
                  + (f"; differ: {', '.join(differ)}" if differ else ""))


if __name__ == "__main__":
    main()
