"""One outside architecture through forgeml (the model half of ``scripts/coverage.py``).

Two routes per architecture, each in its own process (a crash or a hang costs one row, and torch,
TensorFlow and onnx2tf memory goes back after each):
- ``onnx``: ``forgeml.convert(model, example, targets=["onnx"], quantize="int8")``. The fp32 verdict
  is the import and the float passes (check, simplify, cleanup), the int8 verdict the int8-dynamic
  pass and the written model. If the int8 pass itself raises, the fp32 run is repeated without it.
- ``tflite``: ``targets=["tflite"]`` (fp32 variant).

    python scripts/coverage_models.py NAME ROUTE OUT.json EXTRA_DIR
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path


def _one_line(text: str, limit: int = 220) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _stage_failure(stage: dict) -> str:
    rows = [r for r in stage["parity"]["rows"] if not r["passed"]]
    if not rows:
        return f"parity fail at {stage['name']}"
    r = rows[0]
    bits = [f"max_abs {r['max_abs']:.3g}" if isinstance(r.get("max_abs"), float) else ""]
    for k in ("cosine", "centered_cosine", "top1"):
        if isinstance(r.get(k), float):
            bits.append(f"{k} {r[k]:.4f}")
    return f"parity fail at {stage['name']} ({r['output']}: {', '.join(b for b in bits if b)})"


def _verdict(stages: list[dict]) -> str:
    bad = [s for s in stages if "parity" in s and not s["parity"]["passed"]]
    return "pass" if not bad else _stage_failure(bad[0])


def run(name: str, route: str, extra: Path) -> dict:
    """{"onnx": verdict, "int8": verdict} or {"tflite": verdict}; a verdict is "pass" or one line."""
    import forgeml
    from forgeml.errors import ForgeError, first_line
    from forgeml.targets.tflite.target import TFLiteConfig

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from coverage_archs import ARCHS

    arch = next(a for a in ARCHS if a.name == name)
    if arch.source in ("torchvision", "timm"):  # only these see the extra folder: transformers probes torchvision
        sys.path.insert(0, str(extra))
    scratch = Path(tempfile.mkdtemp(prefix="cov-model-"))
    t0 = time.perf_counter()
    try:
        model, example = arch.build(extra, scratch) if arch.source == "wheel" else arch.build()
    except Exception as e:  # noqa: BLE001 - the model itself could not be built here
        why = f"not built: {first_line(e, with_type=True)}"
        return {k: _one_line(why) for k in (("onnx", "int8") if route == "onnx" else ("tflite",))}
    parity = forgeml.ParityOptions(batches=1, localize="never")

    def convert(targets, quantize=None, target_configs=None):
        """``forgeml.convert`` minus latency timing (seven extra runs of every stage)."""
        from dataclasses import replace

        from forgeml.pipeline.config import build_config
        from forgeml.pipeline.run import run as run_pipeline
        from forgeml.pipeline.sources import resolve

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = build_config(targets=targets, parity=parity, target_configs=target_configs,
                                  quantize=None if quantize is None else forgeml.QuantizeOptions(quantize),
                                  command=f"scripts/coverage.py {name}")
            return run_pipeline(resolve(model, example), replace(config, latency=False), scratch / "out", force=True)

    def failure(e: Exception) -> str:
        text = str(e) if isinstance(e, ForgeError) else f"crash: {first_line(e, with_type=True)}"
        return _one_line(text)

    out: dict = {}
    if route == "tflite":
        try:
            r = convert(targets=["tflite"], target_configs={"tflite": TFLiteConfig(variant="fp32")})
            out["tflite"] = _one_line(r.errors["tflite"]) if "tflite" in r.errors else \
                _verdict([s for s in r.manifest["stages"] if s["name"] == "tflite"])
        except Exception as e:  # noqa: BLE001 - every failure is a row
            out["tflite"] = "import: " + failure(e)
    else:
        try:
            r = convert(targets=["onnx"], quantize="int8")
            stages = r.manifest["stages"]
            cut = next((i for i, s in enumerate(stages) if s["name"].startswith("int8")), len(stages))
            out["onnx"] = _verdict(stages[:cut])
            out["int8"] = _one_line(r.errors["onnx"]) if "onnx" in r.errors else _verdict(stages[cut:])
        except Exception as e:  # noqa: BLE001
            out["int8"] = failure(e)
            if "int8" in str(e):
                try:
                    out["onnx"] = _verdict(convert(targets=["onnx"]).manifest["stages"])
                except Exception as e2:  # noqa: BLE001
                    out["onnx"] = failure(e2)
            else:
                out["onnx"] = out["int8"]
                out["int8"] = "skipped: no fp32 model"
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


class _Timeout(Exception):
    pass


def batch(items: list[tuple[str, str]], out: Path, extra: Path, limit: int) -> None:
    """A worker for several rows: one interpreter (torch and forgeml imported once), a "start" line
    before each row and its result after it, so the parent can tell which row killed a worker."""
    import signal

    def alarm(signum, frame):
        raise _Timeout()

    signal.signal(signal.SIGALRM, alarm)
    with out.open("a") as f:
        for name, route in items:
            f.write(json.dumps({"start": [name, route]}) + "\n")
            f.flush()
            signal.alarm(limit)
            try:
                got = run(name, route, extra)
            except _Timeout:
                keys = ("onnx", "int8") if route == "onnx" else ("tflite",)
                got = {k: f"not run: no result within {limit} s" for k in keys}
            finally:
                signal.alarm(0)
            f.write(json.dumps({"name": name, "route": route, "result": got}) + "\n")
            f.flush()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if sys.argv[1] == "--batch":  # --batch ITEMS.json OUT.jsonl EXTRA LIMIT
        batch([tuple(x) for x in json.loads(Path(sys.argv[2]).read_text())], Path(sys.argv[3]), Path(sys.argv[4]),
              int(sys.argv[5]))
    else:
        name, route, dest, extra = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
        dest.write_text(json.dumps(run(name, route, extra)))
