"""Encoder-decoders for ``docs/coverage.md``: tiny seeded T5, BART and Whisper through ``--to onnx`` (fp32),
and one lower-precision variant each, judged by generation parity (greedy tokens against transformers'
``generate``, per-step logits). Results go to ``docs/coverage_seq2seq.json``; one process per conversion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "coverage_seq2seq.json"
RUNS = (("t5", None), ("bart", None), ("whisper", None), ("t5", "int8"), ("bart", "fp16"), ("whisper", "fp16"))

_WORKER = r"""
import json, sys, tempfile, time
from pathlib import Path
from tests.converters.seq2seq_models import MODELS
import forgeml
from forgeml.options import ParityOptions
name, q = sys.argv[1], (sys.argv[2] or None)
t = time.time()
with tempfile.TemporaryDirectory() as tmp:
    run = forgeml.convert(MODELS[name](), targets=["onnx"], out_dir=Path(tmp) / "out", quantize=q,
                          parity=ParityOptions(batches=1))
    row = {"ok": run.ok, "errors": run.errors, "seconds": round(time.time() - t), "stages": {}}
    row["order"] = [st["name"] for st in run.manifest["stages"]]
    row["failed"] = [f"{st['name']}: {r['output']}: {r.get('problem')}" for st in run.manifest["stages"]
                     for r in st.get("parity", {}).get("rows", []) if r.get("passed") is False]
    for st in run.manifest["stages"]:
        for r in st.get("parity", {}).get("rows", []):
            if r["output"].startswith("generation"):
                row["stages"][st["name"]] = {k: r.get(k) for k in ("passed", "tokens_matched", "max_abs",
                                                                     "first_divergence", "problem")}
print("RESULT " + json.dumps(row))
"""


def sweep(match: str = "") -> dict:
    """Run every conversion (or those whose "model precision" key contains one of ``match``'s
    comma-separated words) and merge the rows into the results file."""
    out = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    words = [w for w in match.split(",") if w]
    for name, q in RUNS:
        key = f"{name} {q or 'fp32'}"
        if words and not any(w in key for w in words):
            continue
        p = subprocess.run([sys.executable, "-c", _WORKER, name, q or ""], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=1800)
        line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
        out[key] = json.loads(line[7:]) if line else {"ok": False, "errors": {"run": (p.stderr.strip().splitlines()
                                                                                      or ["no output"])[-1]}}
        print(key, out[key].get("ok"), flush=True)
    RESULTS.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return out


def render() -> list[str]:
    lines = ["## Encoder-decoders (generation parity)", ""]
    if not RESULTS.exists():
        return lines + ["Not run yet (`--only seq2seq`).", ""]
    rows = json.loads(RESULTS.read_text())
    lines += [
        "Tiny seeded T5, BART and Whisper built from configs in code (`tests/converters/seq2seq_models.py`),",
        "through `forgeml.convert(..., targets=[\"onnx\"])` with the default passes: `encoder_model.onnx` +",
        "`decoder_with_past_model.onnx`. 32 greedy tokens from 4 inputs (Whisper: log-mel features of",
        "synthetic audio) decoded in onnxruntime, encoder once then the decoder with its cache, against",
        "transformers' `generate(do_sample=False)`; tokens matched / total (a prompt stops at EOS) and the",
        "largest per-step logit difference up to the first divergence, for the IR (both graphs in one) after",
        "the last pass and for the two written files.",
        "",
        "| model | precision | IR stages: fewest tokens | onnx files: tokens | max logit diff | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for key, row in sorted(rows.items()):
        name, prec = key.split(" ", 1)
        stages = row.get("stages", {})
        files = stages.get("onnx", {})
        ir = sorted((int(v["tokens_matched"].split("/")[0]), k, v["tokens_matched"]) for k, v in stages.items()
                    if k != "onnx" and v.get("tokens_matched"))
        fewest = f"{ir[0][2]} ({ir[0][1]})" if ir else "–"
        diff = files.get("max_abs")
        errors = "; ".join(f"{k}: {v}" for k, v in (row.get("errors") or {}).items())
        failed = "; ".join(row.get("failed") or [])
        verdict = "✅ pass" if row.get("ok") else "❌ " + (errors or failed or "a stage failed")
        lines.append(f"| {name} | {prec} | {fewest} | {files.get('tokens_matched', '–')} | "
                     f"{'–' if diff is None else f'{diff:.2g}'} | {verdict} |")
    return lines + [""]
