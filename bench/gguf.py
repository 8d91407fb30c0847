"""GGUF conversion throughput and memory: streaming writer vs loading the whole checkpoint first.

For a ~440 MB float16 llama checkpoint (built in code, cached), each GGUF type is written twice in
fresh subprocesses: by forgeml's streaming writer (one slice of rows in memory at a time; then the
weight check, which dequantizes the file slice by slice against the source) and by a naive
writer that loads every tensor first (``safetensors.numpy.load_file``) — the usual way. Each child
reports its own peak RSS (``ru_maxrss``) and its RSS after imports, so the table shows what
conversion itself adds. Printed side by side: MB/s, peak RSS, peak / model size, time per tensor type.

    PYTHONPATH=. python bench/gguf.py [--types f16,q8_0,q4_0] [--skip-naive]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np, gguf, safetensors
from forgeml.formats.hf_checkpoint import read_config, safetensors_files
from forgeml.targets.gguf import arch as gguf_arch
from forgeml.targets.gguf.tensors import SafetensorsSource
from forgeml.targets.gguf.vocab import read_vocab
from forgeml.targets.gguf.write import write_gguf
ckpt, typ, out, mode = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
cfg = read_config(ckpt)
src = SafetensorsSource(safetensors_files(ckpt))
if mode == "naive":
    from safetensors.numpy import load_file
    t0 = time.perf_counter()
    everything = {}
    for f in safetensors_files(ckpt):
        everything.update(load_file(str(f)))
    class Loaded:
        def names(self): return list(everything)
        def shape(self, n): return everything[n].shape
        def get(self, n): return everything[n].astype(np.float32)
        def get_rows(self, n, a, b): return everything[n][a:b].astype(np.float32)
        def nbytes(self, n): return everything[n].nbytes
    src = Loaded()
plan = gguf_arch.plan(cfg, src.names(), src.shape, ckpt.name)
vocab = read_vocab(ckpt, cfg, plan.vocab_size)
t0 = time.perf_counter()
stats = write_gguf(out, plan, vocab, src, typ)
total = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
check = None
if mode == "check":
    from forgeml.targets.gguf.check import check_weights
    t1 = time.perf_counter()
    summary = check_weights(out, plan, src)
    check = {"seconds": time.perf_counter() - t1, "worst": summary["worst"],
             "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
print(json.dumps({"stats": stats.to_json(), "seconds": total, "baseline_mb": base, "peak_mb": peak,
                  "out_bytes": out.stat().st_size, "check": check}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", default="f16,q8_0,q4_0")
    ap.add_argument("--skip-naive", action="store_true", help="only the streaming writer")
    args = ap.parse_args()
    from models_zoo.hf_models import big_checkpoint

    print("building/reusing the bench checkpoint …", file=sys.stderr)
    ckpt = big_checkpoint()
    model_mb = sum(f.stat().st_size for f in ckpt.glob("*.safetensors")) / 1e6
    print(f"checkpoint: {ckpt.name}  {model_mb:.0f} MB float16 safetensors")
    print(f"{'type':6} {'writer':9} {'s':>6} {'MB/s':>7} {'peak RSS MB':>12} {'added MB':>9} {'peak/model':>10}  "
          "time per tensor type")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="forgeml-bench-gguf-") as tmp:
        for typ in args.types.split(","):
            for mode in (("check",) if args.skip_naive else ("check", "naive")):
                out = Path(tmp) / f"{typ}-{mode}.gguf"
                proc = subprocess.run([sys.executable, "-c", CHILD, str(ckpt), typ, str(out), mode],
                                      capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    print(f"{typ:6} {mode:9} FAILED: {proc.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                rows[(typ, mode)] = r
                per_type = ", ".join(f"{k} {v['tensors']}×{v['seconds']:.2f}s" for k, v in r["stats"]["by_type"].items())
                name = "stream" if mode == "check" else mode
                print(f"{typ:6} {name:9} {r['seconds']:6.2f} {model_mb / r['seconds']:7.1f} {r['peak_mb']:12.0f} "
                      f"{r['peak_mb'] - r['baseline_mb']:9.0f} {r['peak_mb'] / model_mb:10.2f}  {per_type}")
                if r["check"]:
                    c = r["check"]
                    print(f"{'':6} {'+check':9} {c['seconds']:6.2f} {model_mb / c['seconds']:7.1f} {c['peak_mb']:12.0f} "
                          f"{c['peak_mb'] - r['baseline_mb']:9.0f} {c['peak_mb'] / model_mb:10.2f}  weight check "
                          f"(dequantize vs source), worst rel RMS {c['worst']['rel_rmse']:.2e} in {c['worst']['tensor']}")
                out.unlink(missing_ok=True)
    if not args.skip_naive:
        for typ in args.types.split(","):
            s, n = rows.get((typ, "check")), rows.get((typ, "naive"))
            if s and n:
                print(f"{typ}: streaming peak RSS is {s['peak_mb'] / n['peak_mb']:.2f}x the load-everything writer's; "
                      f"speed {n['seconds'] / s['seconds']:.2f}x")
    worst = max((max(r["peak_mb"], (r["check"] or {}).get("peak_mb", 0)) for (t, m), r in rows.items()
                 if m == "check"), default=float("nan"))
    print(f"streaming writer + weight check: worst peak RSS {worst:.0f} MB = {worst / model_mb:.2f} of the {model_mb:.0f} MB model "
          f"({'under' if worst < model_mb / 2 else 'NOT under'} half)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
