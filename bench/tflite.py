"""TFLite interpreter latency vs onnxruntime, per variant, on the zoo models, measured side by side.

    PYTHONPATH=. python bench/tflite.py [--models mlp,cnn,transformer] [--threads 1] [--seconds 1.5]

For each zoo model: one import to ONNX (default passes), then every TFLite variant built by the
tflite target from that same float IR. Both runtimes get prepared inputs (the TFLite ones already
in its NHWC layout) and are timed in alternating blocks, so drift on a shared machine hits both
alike. Prints per-call medians and the ratio TFLite / onnxruntime (fp32 ONNX, the same graph), plus
the variant's centered cosine vs onnxruntime so a fast-but-wrong file stands out. Numbers are printed,
never asserted.
"""

from __future__ import annotations

from forgeml.runtime.machine import print_machine

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _build(name: str, tmp: Path):
    from forgeml.converters import ImportOptions
    from forgeml.passes import DEFAULT_PASSES, make_pass
    from forgeml.pipeline.sources import resolve
    from forgeml.targets.base import TargetContext
    from forgeml.targets.onnx.target import OnnxTarget
    from forgeml.parity.inputs import parity_inputs, random_like

    r = resolve(f"zoo:{name}")
    conv = r.converter.convert(r.model, r.example_inputs, r.ref, ImportOptions(output_names=r.output_names))
    ir = conv.ir
    for p in (make_pass(n) for n in DEFAULT_PASSES):
        ir = ir.replace(model=p(ir.model).model)
    sets = parity_inputs(conv.example_inputs, ir.signature, batches=2, seed=0, dynamic_batch=False)
    calib = [random_like(conv.example_inputs, ir.signature, seed=100 + i) for i in range(8)]
    ctx = TargetContext(converted=conv, float_ir=ir, input_sets=tuple(sets))
    onnx_path = OnnxTarget().build(ir, tmp, ctx).path
    return conv, ir, ctx, calib, onnx_path


def _time_pair(a, b, seconds: float) -> tuple[float, float]:
    """Median seconds per call of ``a`` and ``b``, timed in alternating blocks."""
    for _ in range(10):
        a(), b()
    n = 1
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.02:  # calls per block: about 20 ms of the slower one
        a(), b()
        n += 1
    ta, tb = [], []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(ta) < 5:
        t = time.perf_counter()
        for _ in range(n):
            a()
        ta.append((time.perf_counter() - t) / n)
        t = time.perf_counter()
        for _ in range(n):
            b()
        tb.append((time.perf_counter() - t) / n)
    return statistics.median(ta), statistics.median(tb)


def _centered_cosine(ref: np.ndarray, got: np.ndarray) -> float:
    """Cosine of the input-dependent part (each output minus its batch mean): see FACTS.md."""
    r = np.asarray(ref, np.float64)
    g = np.asarray(got, np.float64)
    r, g = (r - r.mean(axis=0)).ravel(), (g - g.mean(axis=0)).ravel()
    return float(r @ g / (np.linalg.norm(r) * np.linalg.norm(g) + 1e-30))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,cnn,transformer")
    ap.add_argument("--variants", default="fp32,fp16,int8,int8-dynamic")
    ap.add_argument("--threads", type=int, default=1, help="threads for both runtimes")
    ap.add_argument("--seconds", type=float, default=1.5, help="timing budget per (model, variant)")
    args = ap.parse_args()
    print_machine()  # first line: which CPU these numbers belong to

    import onnxruntime as ort
    from dataclasses import replace

    from forgeml.targets.tflite.target import TFLiteConfig, TFLiteTarget
    from forgeml.targets.tflite.runner import tflite_runner

    print(f"# TFLite interpreter vs onnxruntime {ort.__version__}, {args.threads} thread(s), "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"{'model':12} {'variant':13} {'KiB':>7} {'ort µs':>9} {'tflite µs':>10} {'tflite/ort':>10} {'c-cosine':>9}")
    target = TFLiteTarget()
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            conv, ir, ctx, calib, onnx_path = _build(name, tmp)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = args.threads
            opts.log_severity_level = 3
            sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
            x = ctx.input_sets[0]
            feeds = {i.name: x[i.name] for i in sess.get_inputs()}
            ref = sess.run(None, feeds)[0]
            for variant in args.variants.split(","):
                vctx = replace(ctx, calibration=tuple(calib), config=TFLiteConfig(variant=variant))
                vdir = tmp / variant
                vdir.mkdir()
                art = target.build(ir, vdir, vctx)
                run = tflite_runner(art.path, num_threads=args.threads)
                got = np.array(run(x)[ir.signature.output_names[0]])
                # A fresh interpreter for timing: the runner's signature runner holds a reference that
                # makes the low-level invoke() refuse to run.
                from ai_edge_litert.interpreter import Interpreter

                interp = Interpreter(model_path=str(art.path), num_threads=args.threads)
                interp.allocate_tensors()
                ins = {d["name"]: d for d in interp.get_input_details()}
                idx = []
                for m in run.iomap.inputs:
                    det = next(d for d in ins.values() if d["name"] in (m.source, m.key))
                    idx.append((det["index"], np.ascontiguousarray(m.to_tflite(x[m.source]).astype(det["dtype"]))))
                out_index = interp.get_output_details()[0]["index"]

                def tfl():
                    for i, a in idx:
                        interp.set_tensor(i, a)
                    interp.invoke()
                    return interp.get_tensor(out_index)

                t_ort, t_tfl = _time_pair(lambda: sess.run(None, feeds), tfl, args.seconds)
                cos = _centered_cosine(ref, got)
                print(f"{name:12} {variant:13} {art.path.stat().st_size / 1024:7.1f} {t_ort * 1e6:9.1f} "
                      f"{t_tfl * 1e6:10.1f} {t_tfl / t_ort:10.2f} {cos:9.6f}", flush=True)


if __name__ == "__main__":
    main()
