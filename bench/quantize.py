"""Quantization benchmark: latency, size and parity of every --quantize mode on the zoo, in one run.

For each zoo model: torch eager, onnxruntime on the fp32 export, and onnxruntime on each mode's
artifact (made by forgeml.convert, so the modes' own passes, budgets and fallbacks apply). Latency
is the median over repeats, the sessions interleaved round-robin so that load from other processes
hits them alike; it is printed as a ratio to onnxruntime fp32 (>1 = faster). Parity is measured
against torch on seeded inputs drawn like the example (never the inputs forgeml tuned on).

    python bench/quantize.py                       # every zoo torch model, every mode
    python bench/quantize.py --models transformer-base --repeats 30 --samples 100
"""

from __future__ import annotations

from forgeml.runtime.machine import print_machine

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ALL_MODES = ("fp16", "int8", "int8-static", "int4")
MODES = ALL_MODES


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


def _session(path: Path, threads: int):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.log_severity_level = 3
    o.intra_op_num_threads = threads
    # Idle worker threads would spin after each run and steal the cores from the next session timed.
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def bench_model(name: str, repeats: int, samples: int, threads: int, workdir: Path) -> list[dict]:
    import torch

    import forgeml
    from forgeml.ir import signature_of
    from forgeml.passes.base import from_proto
    from forgeml.parity.inputs import random_like
    from models_zoo import ZOO

    torch.set_num_threads(threads)
    build = ZOO[name].build()
    example = build.example_inputs
    converts: dict[str, object] = {}
    t0 = time.perf_counter()
    converts["fp32"] = forgeml.convert(f"zoo:{name}", targets=["onnx"], out_dir=workdir / f"{name}-fp32")
    import onnx

    signature = signature_of(from_proto(onnx.load(str(converts["fp32"].artifacts["onnx"].path))))
    calibration = [random_like(example, signature, 20_000 + i) for i in range(32)]
    for mode in MODES:
        try:
            converts[mode] = forgeml.convert(f"zoo:{name}",
                                             targets=["onnx"],
                                             out_dir=workdir / f"{name}-{mode}",
                                             quantize=forgeml.QuantizeOptions(mode, calibration=tuple(calibration) if mode == "int8-static" else ()))
        except forgeml.ForgeError as e:
            converts[mode] = e
    convert_s = time.perf_counter() - t0

    eval_sets = [random_like(example, signature, 10_000 + i) for i in range(samples)]
    model = build.model
    feed_torch = [{k: torch.from_numpy(v) for k, v in s.items()} for s in eval_sets]
    with torch.no_grad():
        ref = [model(**f).numpy() for f in feed_torch]

    sessions = {"onnxruntime fp32": _session(converts["fp32"].artifacts["onnx"].path, threads)}
    for mode in MODES:
        c = converts[mode]
        if not isinstance(c, Exception):
            sessions[mode] = _session(c.artifacts["onnx"].path, threads)
    runs = {}
    for key, s in sessions.items():
        out_name = s.get_outputs()[0].name
        runs[key] = [s.run([out_name], e)[0] for e in eval_sets]

    # Latency: interleaved round-robin on the example input, after a warm-up.
    timers = {"torch eager": lambda: model(**feed_torch[0])}
    for key, s in sessions.items():
        timers[key] = (lambda s=s: s.run(None, eval_sets[0]))
    times: dict[str, list[float]] = {k: [] for k in timers}
    with torch.no_grad():
        for fn in timers.values():
            fn()
        for _ in range(repeats):
            for key, fn in timers.items():
                t = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t)
    median = {k: float(np.median(v)) for k, v in times.items()}
    base_ms = median["onnxruntime fp32"]
    fp32_bytes = converts["fp32"].artifacts["onnx"].path.stat().st_size

    r = np.concatenate(ref)
    rows = []
    for key in ["torch eager", "onnxruntime fp32", *MODES]:
        row = {"model": name, "variant": key}
        c = converts.get(key if key in MODES else "fp32")
        if key in MODES and isinstance(c, Exception):
            row["error"] = str(c)
            rows.append(row)
            continue
        row["ms"] = median[key] * 1e3
        row["speedup"] = base_ms / median[key]
        if key != "torch eager":
            path = c.artifacts["onnx"].path
            row["size"] = path.stat().st_size / fp32_bytes
            q = np.concatenate(runs[key])
            row["cosine"] = _cos(r, q)
            row["centered"] = _cos(r - r.mean(0), q - q.mean(0))
            row["top1"] = float(np.mean(r.argmax(-1) == q.argmax(-1)))
            if key in MODES:
                row["ok"] = c.ok
                kept = [st.get("details", {}).get("kept_in_float", []) for st in c.manifest["stages"]
                        if st["kind"] == "pass"]
                row["kept"] = sum(len(k) for k in kept)
        rows.append(row)
    print(f"# {name}: converted fp32 + {len(MODES)} modes in {convert_s:.0f}s; {samples} parity samples, "
          f"{repeats} timed repeats, {threads} threads", file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    head = "| model | variant | latency ms | speed vs ort fp32 | file vs fp32 | cosine | centered cos | top-1 | kept float | forgeml verdict |"
    out = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['model']} | {r['variant']} | – | – | – | – | – | – | – | error: {r['error'][:80]} |")
            continue
        f = lambda k, fmt: (fmt.format(r[k]) if k in r else "–")  # noqa: E731
        verdict = "–" if "ok" not in r else ("pass" if r["ok"] else "FAIL")
        out.append(f"| {r['model']} | {r['variant']} | {f('ms', '{:.2f}')} | {f('speedup', '{:.2f}x')} | "
                   f"{f('size', '{:.3f}x')} | {f('cosine', '{:.5f}')} | {f('centered', '{:.5f}')} | "
                   f"{f('top1', '{:.3f}')} | {f('kept', '{}')} | {verdict} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,cnn,transformer,transformer-base")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", default=",".join(ALL_MODES))
    ap.add_argument("--json", type=Path, default=None, help="also write the table as JSON (bench/tables.py reads it)")
    args = ap.parse_args()
    print_machine()  # first line: which CPU these numbers belong to
    global MODES
    MODES = tuple(m.strip() for m in args.modes.split(","))
    rows = []
    with tempfile.TemporaryDirectory(prefix="forgeml-bench-") as tmp:
        for name in args.models.split(","):
            rows += bench_model(name.strip(), args.repeats, args.samples, args.threads, Path(tmp))
    import platform

    from forgeml.passes.precision.cpu_features import detect

    print(f"CPU: {platform.machine()} ({detect().isa}), {args.threads} threads")
    print(table(rows))
    if args.json:
        import json

        from forgeml.runtime.machine import detect as machine

        header = (f"`python bench/quantize.py --models {args.models} --repeats {args.repeats} --samples {args.samples}`: "
                  "speed and file size are ratios to onnxruntime fp32 measured side by side in one run; parity is "
                  f"against torch on {args.samples} seeded inputs the passes never tuned on; \"kept float\" is the "
                  "number of nodes the accuracy-aware fallback kept in float.")
        args.json.write_text(json.dumps({"machine": machine().line(), "header": header, "markdown": table(rows),
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
