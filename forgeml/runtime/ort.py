"""onnxruntime as a runner: the reference ONNX runtime for every IR stage."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from forgeml.errors import TargetError, first_line
from forgeml.ir import weight_bytes  # noqa: F401  (re-exported)
from forgeml.runtime import InputSet


class OrtRunner:
    """An onnxruntime session as a runner; ``session`` is there for inspection and benchmarks."""

    def __init__(self, session, scratch=None):
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self.scratch = scratch  # a TemporaryDirectory holding the model's files, removed with the runner

    def __call__(self, inputs: InputSet) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise TargetError(f"onnxruntime: no value given for model input(s) {missing}")
        feeds = {n: np.ascontiguousarray(inputs[n]) for n in self.input_names}
        try:
            values = self.session.run(self.output_names, feeds)
        except Exception as e:
            raise TargetError(f"onnxruntime failed to run the model: {ort_message(e)}") from e
        return dict(zip(self.output_names, values))


def ort_runner(model: bytes | str | os.PathLike, *, providers: list[str] | None = None,
               optimize: bool = True) -> OrtRunner:
    """A runner over an ONNX model given as serialized bytes or a file path.

    ``optimize=False`` disables onnxruntime's own graph rewrites, so a parity number measures
    the graph as written rather than what onnxruntime made of it.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # a failing kernel's ERROR log repeats the exception forgeml reports in one line
    threads = intra_op_threads()
    if threads:
        opts.intra_op_num_threads = threads
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    what = model if isinstance(model, bytes) else str(Path(model))
    try:
        session = ort.InferenceSession(what, opts, providers=providers or ["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises several unrelated exception types
        raise TargetError(f"onnxruntime could not load the model: {ort_message(e)}") from e
    return OrtRunner(session)


def intra_op_threads() -> int | None:
    """``FORGEML_THREADS``: onnxruntime's intra-op pool size, which (unlike torch) it reads from no
    environment variable; set by ``forgeml batch`` from each task's CPUs. None: onnxruntime's default."""
    value = os.environ.get("FORGEML_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def ort_message(e: BaseException) -> str:
    """onnxruntime's error in one line, with the part a reader needs kept: its kernel failures end
    in "Status Message: /onnxruntime_src/<file>.cc:52 virtual <C++ signature> const <the reason>",
    and the reason is what a 300-character cut would drop."""
    import re

    line = first_line(e)
    m = re.search(r"Status Message: (?:\S+:\d+ )?(?:.*?\) const )?(.+)", " ".join(str(e).split()))
    if m:
        node = re.search(r"running (\w+) node\. Name:'([^']*)'", line)
        where = f"{node.group(1)} node {node.group(2)!r}: " if node else ""
        return (where + m.group(1))[:300]
    return line


PROTOBUF_LIMIT = 2**31 - 1


def ort_runner_for_ir(model) -> OrtRunner:
    """onnxruntime over an ``onnx_ir.Model``: in memory when it fits a protobuf, else through a
    scratch directory with external data (kept alive as long as the runner)."""
    import tempfile

    import onnx_ir

    if weight_bytes(model) < PROTOBUF_LIMIT - (64 << 20):
        return ort_runner(onnx_ir.serde.serialize_model(model).SerializeToString())
    scratch = tempfile.TemporaryDirectory(prefix="forgeml-ort-")
    path = Path(scratch.name) / "model.onnx"
    onnx_ir.save(model, path, external_data="model.onnx.data")
    run = ort_runner(path)
    run.scratch = scratch  # removed when the runner is garbage-collected
    return run
