"""onnxruntime as a runner: the reference ONNX runtime for every IR stage."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from forgeml.errors import TargetError, first_line
from forgeml.ir import PROTOBUF_LIMIT, weight_bytes  # noqa: F401  (re-exported)
from forgeml.runtime import InputSet


def ort_runner(model: bytes | str | os.PathLike, *, providers: list[str] | None = None,
               optimize: bool = True, external_initializers: dict | None = None,
               low_memory: bool = False, external_data_dir: str | None = None) -> OrtRunner:
    """A runner over an ONNX model given as serialized bytes or a file path.

    ``optimize=False`` disables onnxruntime's own graph rewrites, so a parity number measures
    the graph as written rather than what onnxruntime made of it. ``external_initializers`` (name →
    OrtValue) replace the initializers of those names (``ort_runner_for_ir``'s held-out weights).
    ``low_memory`` (large models) turns off weight prepacking and the memory arena: MatMul/Gemm then
    read the weights where they are (mapped from their file) instead of keeping a packed second copy.
    ``external_data_dir``: where the external data of a model given as bytes lives.
    ``runner.release()`` closes the session (its weights leave memory); the next call opens it again.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # a failing kernel's ERROR log repeats the exception forgeml reports in one line
    threads = intra_op_threads()
    if threads:
        opts.intra_op_num_threads = threads
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if external_initializers:
        opts.add_external_initializers(list(external_initializers), list(external_initializers.values()))
    if external_data_dir is not None:
        opts.add_session_config_entry("session.model_external_initializers_file_folder_path", external_data_dir)
    if low_memory:
        opts.add_session_config_entry("session.disable_prepacking", "1")
        opts.enable_cpu_mem_arena = False
    what = model if isinstance(model, bytes) else str(Path(model))
    return OrtRunner(lambda: _open_session(ort, what, opts, providers), external_initializers)


def _open_session(ort, what, opts, providers):
    try:
        return ort.InferenceSession(what, opts, providers=providers or ["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises several unrelated exception types
        raise TargetError(f"onnxruntime could not load the model: {ort_message(e)}") from e


class OrtRunner:
    """A ``Runner`` over one onnxruntime session; ``release()`` drops the session (and with it the model's
    memory), the next call opens it again. A plain object without reference cycles, so a runner that
    goes out of scope frees its session at once, not at the next garbage collection."""

    def __init__(self, open_session, held: dict | None = None):
        self._open = open_session
        self.held = held  # OrtValues the session reads in place: they must outlive it
        self.scratch = None  # kept for callers that read it: no runner writes scratch files any more
        self.session = open_session()  # for inspection and benchmarks
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, inputs: InputSet) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise TargetError(f"onnxruntime: no value given for model input(s) {missing}")
        if self.session is None:
            self.session = self._open()
        feeds = {n: np.ascontiguousarray(inputs[n]) for n in self.input_names}
        try:
            values = self.session.run(self.output_names, feeds)
        except Exception as e:
            raise TargetError(f"onnxruntime failed to run the model: {ort_message(e)}") from e
        return dict(zip(self.output_names, values))

    def release(self) -> None:
        self.session = None


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



def _plain_dtype(tensor) -> bool:
    """numpy's own numeric types: onnxruntime wraps those arrays without a copy (not bfloat16/int4/strings)."""
    dt = np.dtype(tensor.dtype.numpy())
    return dt.isbuiltin == 1 and dt.kind in "biuf"


def ort_runner_for_ir(model) -> OrtRunner:
    """onnxruntime over an ``onnx_ir.Model``. A small model goes over as one serialized protobuf. A large
    one (``forgeml.ir.is_large``), or one whose weights are still in their external-data files, goes over
    as its graph without weight data, so the 2 GB protobuf limit never applies: weights still in the
    source's data files stay external references that onnxruntime maps from that directory itself (no
    copy: measured 1x the weights, file-backed, where arrays handed over were copied, 2x); weights in
    memory are handed over as arrays (``SessionOptions.add_external_initializers``)."""
    import onnx_ir
    import onnxruntime as ort

    from forgeml.ir import hold_out, is_large

    mapped = [v.const_value for v in model.graph.initializers.values()
              if isinstance(v.const_value, onnx_ir.ExternalTensor)]
    if not mapped and not is_large(model):
        return ort_runner(onnx_ir.serde.serialize_model(model).SerializeToString())
    dirs = {str(t.base_dir) for t in mapped}
    folder = dirs.pop() if len(dirs) == 1 else None
    if folder is not None:  # weights still in the source's data files: onnxruntime maps them itself
        def only(t):
            return _plain_dtype(t) and not isinstance(t, onnx_ir.ExternalTensor)
    else:
        only = _plain_dtype
    proto, held = hold_out(model, as_inputs=False, only=only)
    values = {name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(t.numpy())) for name, t in held.items()}
    return ort_runner(proto.SerializeToString(), external_initializers=values, low_memory=is_large(model),
                      external_data_dir=folder)
