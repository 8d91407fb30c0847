"""ONNX's node conformance cases as a forgeml source (the node half of ``scripts/coverage.py``).

onnx 1.23's wheel ships no ``backend/test/data`` folder, so the cases come from the package's own
generators (``onnx.backend.test.case.node.collect_testcases()``: a model and its (inputs, expected
outputs) sets). Each case goes through ``forgeml.convert`` with the default passes and the onnx target,
its first input set as the example inputs (the model's valid inputs; nothing invented) and its other
sets as the user's parity inputs. Each run lands in one bucket:

- ``converted``: every stage within tolerance;
- ``refused``: forgeml said why in one line (an ``InputError``/``PassError``/``TargetError``);
- ``wrong``: a stage missed its tolerance against onnxruntime on the case as given;
- ``random``: the op draws random numbers (parity between two runs is not defined);
- ``crashed``: any other exception, or a case past its time limit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

RANDOM_OPS = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial"}
TIME_LIMIT_S = 60


@dataclass
class NodeResult:
    name: str
    op: str
    bucket: str  # converted | refused | wrong | random | crashed
    reason: str = ""
    seconds: float = 0.0


_CASES: dict | None = None
_WORK: Path | None = None


def cases() -> dict:
    """The node cases by name (generated once per process: ~2 s)."""
    global _CASES
    if _CASES is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from onnx.backend.test.case.node import collect_testcases

            _CASES = {c.name: c for c in collect_testcases()}
    return _CASES


def _op_of(model) -> str:
    ops = [n.op_type for n in model.graph.node]
    return ops[0] if len(ops) == 1 else "+".join(dict.fromkeys(ops)) if len(ops) <= 3 else f"{ops[0]}+{len(ops) - 1} more"


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def run_case(name: str) -> NodeResult:
    """One case through forgeml (onnx target, default passes); never raises."""
    global _WORK
    import numpy as np

    from forgeml.errors import ForgeError, first_line

    case = cases()[name]
    model = case.model
    op = _op_of(model)
    if _WORK is None:
        _WORK = Path(tempfile.mkdtemp(prefix=f"cov-nodes-{os.getpid()}-"))
    t0 = time.perf_counter()
    init = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in init]
    sets = []
    for inputs, _ in case.data_sets:
        arrays = [_array(a) for a in inputs]
        if len(arrays) != len(names) or not all(isinstance(a, np.ndarray) for a in arrays):
            sets = None  # sequence/optional inputs: forgeml takes tensors only; let it say so itself
            break
        sets.append(dict(zip(names, arrays)))
    example = sets[0] if sets else None
    user = tuple(sets[1:]) if sets else ()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT_S)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = _convert(model, example, user)
        if r.errors:
            why = next(iter(r.errors.values()))
            bucket = "crashed" if "--debug shows the traceback" in why else "refused"
            return NodeResult(name, op, bucket, _one_line(why), time.perf_counter() - t0)
        if r.ok:
            return NodeResult(name, op, "converted", "", time.perf_counter() - t0)
        if any(n.op_type in RANDOM_OPS for n in model.graph.node):
            return NodeResult(name, op, "random", "random op: outputs differ run to run", time.perf_counter() - t0)
        bad = [s for s in r.manifest["stages"] if s.get("parity") and not s["parity"]["passed"]]
        first = bad[0] if bad else {"name": "?", "parity": {"rows": []}}
        rows = [x for x in first["parity"]["rows"] if not x["passed"]]
        detail = f"{rows[0]['output']}: max_abs {rows[0].get('max_abs')}" if rows else ""
        return NodeResult(name, op, "wrong", f"stage {first['name']} {detail}", time.perf_counter() - t0)
    except _Timeout:
        return NodeResult(name, op, "crashed", f"no result in {TIME_LIMIT_S} s", time.perf_counter() - t0)
    except ForgeError as e:
        return NodeResult(name, op, "refused", _one_line(str(e)), time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - a crash is what this sweep counts
        return NodeResult(name, op, "crashed", _one_line(first_line(e, with_type=True)), time.perf_counter() - t0)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _convert(model, example, user):
    """``forgeml.convert(model, example, targets=["onnx"], parity=...)`` minus the latency timing
    (seven extra runs per stage that say nothing about conformance)."""
    from dataclasses import replace

    import forgeml
    from forgeml.pipeline.config import build_config
    from forgeml.pipeline.run import run
    from forgeml.pipeline.sources import resolve

    resolved = resolve(model, example)
    config = build_config(targets=["onnx"], parity=forgeml.ParityOptions(batches=1, inputs=user, localize="never"),
                          command="scripts/coverage.py node case")
    return run(resolved, replace(config, latency=False), _WORK / "out", force=True)


def _array(value):
    """A case's input as numpy: arrays and numpy scalars as they are, a TensorProto (how the cases
    store element types numpy lacks) through onnx's own reader; sequences and optionals stay as given."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    if isinstance(value, (np.ndarray, np.generic)):
        return np.asarray(value)
    if isinstance(value, TensorProto):
        return numpy_helper.to_array(value)
    return value


def _one_line(text: str, limit: int = 240) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _shard(names: list[str], out: Path) -> None:
    """A worker: run ``names`` in order, appending a "start" line before each case and its result after
    it, so the parent can tell which case killed a worker that died (a segfault in a native library)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cases()
    with out.open("a") as f:
        for name in names:
            f.write(json.dumps({"start": name}) + "\n")
            f.flush()
            f.write(json.dumps(asdict(run_case(name))) + "\n")
            f.flush()


def run_all(names: list[str] | None = None, jobs: int = 2, progress=print) -> list[dict]:
    """Every case (or ``names``) in ``jobs`` worker processes (each a fresh interpreter running a shard
    of the cases in order; a worker that dies is restarted after the case that killed it, which counts
    as crashed). Returns results as dicts, in case order."""
    todo = sorted(names) if names else sorted(cases())
    work = Path(tempfile.mkdtemp(prefix="cov-nodes-"))
    shards = [todo[i::jobs] for i in range(jobs)]
    done: dict[str, dict] = {}
    t0 = time.perf_counter()
    procs: dict[int, tuple[subprocess.Popen, Path, list[str]]] = {}

    def launch(i: int, names_left: list[str]) -> None:
        out = work / f"shard{i}.jsonl"
        lst = work / f"shard{i}.names"
        lst.write_text("\n".join(names_left))
        cmd = [sys.executable, str(Path(__file__).resolve()), str(lst), str(out)]
        procs[i] = (subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out, names_left)

    for i, shard in enumerate(shards):
        if shard:
            launch(i, shard)
    last = 0
    while procs:
        time.sleep(1)
        for i, (p, out, names_left) in list(procs.items()):
            code = p.poll()
            started = None
            if out.exists():
                for line in out.read_text().splitlines():
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if "start" in rec:
                        started = rec["start"]
                    else:
                        done[rec["name"]] = rec
                        started = None
            if code is None:
                continue
            del procs[i]
            if started is not None and started not in done:  # the worker died inside this case
                done[started] = asdict(NodeResult(started, _op_of(cases()[started].model), "crashed",
                                                  f"the process died (exit {code}) inside this case"))
            left = [n for n in names_left if n not in done]
            if left:
                out.unlink()
                launch(i, left)
        if len(done) - last >= 100 or not procs:
            last = len(done)
            progress(f"node cases: {len(done)}/{len(todo)} ({time.perf_counter() - t0:.0f} s)")
    return [done[n] for n in todo if n in done]


if __name__ == "__main__":  # a worker: python coverage_nodes.py NAMES_FILE OUT.jsonl
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    _shard(Path(sys.argv[1]).read_text().split(), Path(sys.argv[2]))
