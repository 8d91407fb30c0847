"""torch eager vs onnxruntime latency for each zoo model, measured side by side in one run.

Runs alternate (torch, ort, torch, ort, …) so a noisy neighbour slows both alike; medians are
reported with the ratio torch/ort (> 1: onnxruntime is faster). Parity of the two is printed too,
so a fast wrong model can't hide.

    python bench/latency.py [--models mlp,cnn,transformer] [--repeats 200] [--threads 2]
"""

from __future__ import annotations

from forgeml.runtime.machine import print_machine

import argparse
import os
import platform
import statistics
import tempfile
import time

import numpy as np


def bench_model(name: str, repeats: int, threads: int) -> dict:
    import onnxruntime as ort
    import torch

    import forgeml
    from models_zoo import ZOO

    build = ZOO[name].build()
    with tempfile.TemporaryDirectory() as tmp:
        result = forgeml.convert(f"zoo:{name}", targets=["onnx"], out_dir=os.path.join(tmp, "o"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(result.artifacts["onnx"].path), opts, providers=["CPUExecutionProvider"])
    feeds = build.example_inputs
    args = [torch.from_numpy(feeds[n]) for n in feeds]
    model = build.model.eval()

    def run_torch():
        with torch.inference_mode():
            return model(*args)

    def run_ort():
        return sess.run(None, feeds)

    for _ in range(10):  # warm-up both
        run_torch()
        run_ort()
    t_torch, t_ort = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_torch()
        t1 = time.perf_counter()
        run_ort()
        t2 = time.perf_counter()
        t_torch.append(t1 - t0)
        t_ort.append(t2 - t1)
    ref = run_torch().numpy()
    got = run_ort()[0]
    mt, mo = statistics.median(t_torch), statistics.median(t_ort)
    batch = next(iter(feeds.values())).shape[0]
    return {"model": name, "batch": batch, "torch_ms": mt * 1e3, "ort_ms": mo * 1e3, "ratio": mt / mo,
            "max_abs": float(np.abs(ref - got).max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,cnn,transformer")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    a = ap.parse_args()
    print_machine()  # first line: which CPU these numbers belong to
    import torch

    torch.set_num_threads(a.threads)
    import onnxruntime

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {a.threads} threads each; "
          f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; median of {a.repeats} alternating runs")
    print(f"{'model':12} {'batch':>5} {'torch eager ms':>15} {'onnxruntime ms':>15} {'torch/ort':>10} {'max abs':>9}")
    for name in a.models.split(","):
        r = bench_model(name, a.repeats, a.threads)
        print(f"{r['model']:12} {r['batch']:>5} {r['torch_ms']:>15.3f} {r['ort_ms']:>15.3f} {r['ratio']:>9.2f}x "
              f"{r['max_abs']:>9.1e}")


if __name__ == "__main__":
    main()
