"""Regenerate ``docs/coverage.md``: what forgeml does with models nobody on the project wrote.

    PYTHONPATH=. python scripts/coverage.py [--extra DIR] [--only models|nodes|seq2seq] [--routes onnx,tflite]
                                            [--match TEXT] [--fresh] [--jobs 2]

Two sweeps, both offline:
- **outside architectures** (``scripts/coverage_archs.py``): torchvision, timm, transformers models
  built from configs, keras.applications with ``weights=None``, and trained models shipped inside PyPI
  wheels, each through ``--to onnx`` (fp32), int8 and tflite (``scripts/coverage_models.py``, one
  process per architecture and route, with a time limit);
- **ONNX's node conformance cases** (``scripts/coverage_nodes.py``), counted as converted / refused
  with a reason / wrong numbers / crashed;
- **encoder-decoders** (``scripts/coverage_seq2seq.py``): T5, BART, Whisper judged by generation parity.

Results are kept in ``docs/coverage.json``; a rerun redoes only what is missing (``--fresh`` redoes
everything, ``--match`` only the architectures whose name contains TEXT) and rewrites the page from
the whole file. ``--extra`` is a folder holding torchvision and timm (``pip install --no-deps
--target DIR torchvision==0.28.0 timm==1.0.31``; never the project's venv) and ``wheels/`` with the
wheels named in ``coverage_archs.WHEELS`` (``pip download --no-deps``); whatever is missing there is
listed as not run, with the command that fetches it.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from coverage_archs import ARCHS, NEEDS  # noqa: E402

ROUTES = {"onnx": ("onnx", "int8"), "tflite": ("tflite",)}
TIME_LIMIT = {"onnx": 600, "tflite": 900}


def _have(extra: Path, module: str) -> bool:
    import importlib.util

    if (extra / module).is_dir():
        return True
    return module not in ("torchvision", "timm") and importlib.util.find_spec(module) is not None


def sweep_models(results: dict, extra: Path, routes: list[str], match: str, fresh: bool, jobs: int) -> None:
    """Each architecture and route in its own process, ``jobs`` at a time; rows are saved as they land."""
    models = results.setdefault("models", {})
    todo = []
    for arch in ARCHS:
        if match and not any(m.strip().lower() in arch.name.lower() for m in match.split(",") if m.strip()):
            continue
        row = models.setdefault(arch.name, {"source": arch.source, "kind": arch.kind})
        missing = [m for m in NEEDS[arch.source] if not _have(extra, m)]
        for route in routes:
            keys = ROUTES[route]
            if not fresh and all(k in row and not row[k].startswith("not run") for k in keys):
                continue
            if missing:
                for k in keys:
                    row[k] = f"not run: {', '.join(missing)} not installed (see scripts/coverage.py)"
                continue
            todo.append((arch, route))

    # One worker interpreter per shard (torch and forgeml imported once per shard, not per row); torch
    # rows and TensorFlow rows in separate shards. A worker that dies is restarted after the row that
    # killed it, which is recorded as a crash.
    shards: list[list] = [[] for _ in range(max(1, jobs))]
    order = ("transformers", "wheel", "torchvision", "timm", "keras")  # torchvision's folder joins sys.path late
    for i, item in enumerate(sorted(todo, key=lambda it: order.index(it[0].source))):
        shards[i % len(shards)].append(item)
    work = Path(tempfile.mkdtemp(prefix="cov-models-"))
    procs: dict[int, tuple] = {}
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")

    def launch(i: int, items: list) -> None:
        out = work / f"shard{i}.jsonl"
        spec = work / f"shard{i}.json"
        spec.write_text(json.dumps([[a.name, r] for a, r in items]))
        limit = max(TIME_LIMIT.values())
        cmd = [sys.executable, str(HERE / "coverage_models.py"), "--batch", str(spec), str(out), str(extra), str(limit)]
        procs[i] = (subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out, items)

    for i, items in enumerate(shards):
        if items:
            launch(i, items)
    done: set = set()
    while procs:
        time.sleep(2)
        for i, (p, out, items) in list(procs.items()):
            code = p.poll()
            started = None
            lines = out.read_text().splitlines() if out.exists() else []
            for line in lines:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if "start" in rec:
                    started = tuple(rec["start"])
                    continue
                key = (rec["name"], rec["route"])
                started = None
                if key in done:
                    continue
                done.add(key)
                got = rec["result"]
                seconds = got.pop("seconds", None)
                got[f"{rec['route']}_seconds"] = seconds
                models[rec["name"]].update(got)
                print(f"{rec['name']} [{rec['route']}] {seconds} s: " +
                      "; ".join(f"{k}: {models[rec['name']].get(k)}" for k in ROUTES[rec["route"]]), flush=True)
                _save(results)
            if code is None:
                continue
            del procs[i]
            if started is not None and started not in done:
                done.add(started)
                models[started[0]].update({k: f"crash: the worker process died (exit {code}) in this row"
                                           for k in ROUTES[started[1]]})
                _save(results)
            left = [(a, r) for a, r in items if (a.name, r) not in done]
            if left:
                out.unlink(missing_ok=True)
                launch(i, left)


def sweep_nodes(results: dict, jobs: int, match: str = "") -> None:
    """Every node case, or with ``match`` only the cases whose name contains one of its
    comma-separated parts (merged into the results already there)."""
    import coverage_nodes

    names = None
    if match:
        parts = [m.strip() for m in match.split(",") if m.strip()]
        names = [n for n in coverage_nodes.cases() if any(p in n for p in parts)]
    rows = coverage_nodes.run_all(names, jobs=jobs, progress=lambda m: print(m, flush=True))
    if names is not None:
        fresh = {r["name"]: r for r in rows}
        old = results.get("nodes", {}).get("cases", [])
        rows = [fresh.pop(r["name"], r) for r in old] + list(fresh.values())
    results["nodes"] = {"cases": rows}
    _write(NODE_RESULTS, "\n".join(json.dumps(r, sort_keys=True) for r in rows) + "\n")


RESULTS = ROOT / "docs" / "coverage.json"  # the architecture rows
NODE_RESULTS = ROOT / "docs" / "coverage_nodes.jsonl"  # one line per node case (the two sweeps may run at once)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _save(results: dict) -> None:
    """Merge this run's rows into the file row by row (another sweep, say ``--routes tflite``, may be
    writing other columns of the same rows at the same time)."""
    on_disk = json.loads(RESULTS.read_text()).get("models", {}) if RESULTS.exists() else {}
    for name, row in results.get("models", {}).items():
        on_disk.setdefault(name, {}).update({k: v for k, v in row.items() if v is not None})
    _write(RESULTS, json.dumps({"models": on_disk}, indent=1, sort_keys=True) + "\n")


def load() -> dict:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if NODE_RESULTS.exists():
        results["nodes"] = {"cases": [json.loads(line) for line in NODE_RESULTS.read_text().splitlines() if line]}
    return results


def _cell(v: str | None) -> str:
    if v is None:
        return "–"
    if v == "pass":
        return "✅ pass"
    v = v.replace("|", "\\|")
    if v.startswith(("not run", "skipped")):
        return f"⏸ {v}"
    return f"❌ {v}"


def render(results: dict) -> str:
    models = results.get("models", {})
    lines = [
        "# Coverage: models nobody on the project wrote",
        "",
        "Generated by `PYTHONPATH=. python scripts/coverage.py` (results kept in `docs/coverage.json`; a rerun",
        "redoes only what is missing, `--fresh` everything). Do not edit by hand.",
        "",
        f"Last written {datetime.date.today().isoformat()} on {platform.machine()} "
        f"({os.cpu_count()} CPUs), Python {platform.python_version()}.",
        "",
        "## Outside architectures",
        "",
        "Random weights (or the wheel's own trained ones) and small inputs (images 64×64, Keras 96×96, 16",
        "tokens, 4000 audio samples), through `forgeml.convert` with the default passes and one parity batch",
        "besides the example. **onnx**: the import and the float passes within the fp32 profile; **int8**:",
        "`quantize=\"int8\"` (dynamic) within the int8 profile; **tflite**: `targets=[\"tflite\"]`, fp32 variant,",
        "in the TFLite interpreter. A cell is ✅ or the one line forgeml printed; – is not measured yet",
        "(a tflite row takes minutes on a 2-core machine: `--routes tflite --match NAME,…` fills them in).",
        "",
        "Sources: torchvision 0.28.0 and timm 1.0.31 from a separate `--target` folder (never the project's",
        "venv: transformers probes torchvision, whose PyPI wheel is built for CUDA torch). torchvision's",
        "`import` fails registering meta kernels for its C ops (`torchvision::nms`) on the CPU torch; its",
        "classification and segmentation models are pure Python, so the sweep's worker puts an empty",
        "`torchvision._meta_registrations` module in place before importing it (that process only).",
        "transformers models are built from small configs; keras.applications with `weights=None`; wheel",
        "models are extracted from wheels fetched once with `pip download --no-deps` (silero-vad 6.2.3:",
        "TorchScript `.jit` and ONNX; rapidocr 3.10.0: PP-OCR ONNX models from paddle2onnx).",
        "",
        "| architecture | source | onnx (fp32) | int8 | tflite |",
        "|---|---|---|---|---|",
    ]
    counts = collections.Counter()
    known = [a.name for a in ARCHS]
    ordered = [(n, models[n]) for n in known if n in models] + [(n, r) for n, r in models.items() if n not in known]
    for name, row in ordered:
        for k in ("onnx", "int8", "tflite"):
            v = row.get(k)
            counts[(k, "pass" if v == "pass" else "none" if v is None else "not run"
                    if v.startswith(("not run", "skipped")) else "fail")] += 1
        lines.append(f"| {name} | {row['source']} | {_cell(row.get('onnx'))} | {_cell(row.get('int8'))} | "
                     f"{_cell(row.get('tflite'))} |")
    measured = sum(1 for _, r in ordered if r.get("onnx") and not r["onnx"].startswith(("not run", "skipped")))
    lines += ["", f"{len(models)} architectures listed, {measured} with an onnx verdict. " + "; ".join(
        f"{k}: {counts[(k, 'pass')]} pass, {counts[(k, 'fail')]} fail, {counts[(k, 'not run')]} not run"
        for k in ("onnx", "int8", "tflite")) + ".", ""]
    lines += _render_nodes(results.get("nodes"))
    import coverage_seq2seq

    lines += coverage_seq2seq.render()
    return "\n".join(lines) + "\n"


def _render_nodes(nodes: dict | None) -> list[str]:
    if not nodes:
        return ["## ONNX node conformance cases", "", "Not run yet (`--only nodes`).", ""]
    rows = nodes["cases"]
    by = collections.defaultdict(list)
    for r in rows:
        by[r["bucket"]].append(r)
    lines = [
        "## ONNX node conformance cases",
        "",
        "onnx 1.23.2's own generators (`onnx.backend.test.case.node.collect_testcases()`; the wheel ships",
        "no `backend/test/data`). Each case goes through `forgeml.convert` (ONNX source, default passes",
        "check, simplify, cleanup, onnx target) with the case's first input set as the example inputs and",
        "its other sets as parity inputs, against onnxruntime on the case as given.",
        "",
        "| result | cases |",
        "|---|---|",
    ]
    names = {"converted": "converted, parity within fp32 profile", "refused": "refused with a one-line reason",
             "wrong": "wrong numbers (a stage missed its tolerance)", "random": "random ops (no parity defined)",
             "crashed": "crashed"}
    for b in ("converted", "refused", "wrong", "random", "crashed"):
        lines.append(f"| {names[b]} | {len(by[b])} |")
    lines += [f"| total | {len(rows)} |", ""]
    for b in ("crashed", "wrong", "random"):
        if by[b]:
            lines += [f"### {names[b]}", ""] + [f"- `{r['name']}` ({r['op']}): {r['reason']}" for r in by[b]] + [""]
    if by["refused"]:
        lines += ["### Refusals, grouped by reason", ""]
        groups = collections.defaultdict(list)
        for r in by["refused"]:
            groups[_reason_key(r["reason"])].append(r["name"])
        for key, names_ in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            shown = ", ".join(f"`{n}`" for n in names_[:6]) + (f" and {len(names_) - 6} more" if len(names_) > 6 else "")
            lines.append(f"- {len(names_)} × {key}: {shown}")
        lines.append("")
    return lines


def _reason_key(reason: str) -> str:
    """A refusal's reason without the case-specific parts, to group alike ones."""
    import re

    text = re.sub(r"'[^']*'", "'…'", reason)
    text = re.sub(r"\([^()]*\)", "(…)", text)
    text = re.sub(r"\d+", "N", text)
    return text[:160].replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extra", type=Path, default=Path(os.environ.get("FORGEML_COVERAGE_EXTRA", "/work/cov-extra")))
    ap.add_argument("--only", choices=("models", "nodes", "seq2seq", "render"))
    ap.add_argument("--routes", default="onnx,tflite")
    ap.add_argument("--match", default="", help="only architectures whose name contains one of these (comma-separated)")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    results = load()
    if args.only in (None, "models"):
        sweep_models(results, args.extra, [r for r in args.routes.split(",") if r], args.match, args.fresh,
                     args.jobs)
    if args.only in (None, "nodes") and (args.fresh or args.only == "nodes" or "nodes" not in results):
        sweep_nodes(results, args.jobs, args.match if args.only == "nodes" else "")
    import coverage_seq2seq

    if args.only == "seq2seq" or (args.only is None and (args.fresh or not coverage_seq2seq.RESULTS.exists())):
        coverage_seq2seq.sweep(args.match)
    out = ROOT / "docs" / "coverage.md"
    _write(out, render(load()))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
