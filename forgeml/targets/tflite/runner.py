"""The TFLite interpreter (ai-edge-litert) as a runner, speaking the source model's names and layouts.

Inputs arrive by source name in the source layout (NCHW); each goes through the .tflite's
``forgeml.io`` map to its serving-signature entry in the TFLite layout (NHWC), quantized when the
model takes int8. Outputs come back the other way, so parity compares like with like.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from forgeml.runtime.quiet import native_quiet
from forgeml.errors import TargetError, first_line, require
from forgeml.formats.tflite import IOMap, TensorMap, read
from forgeml.runtime import InputSet


class TFLiteRunner:
    """The interpreter behind one serving signature, speaking the source model's names and layouts.
    ``iomap`` maps source tensors to the signature's (layouts, dtypes); ``interpreter`` is there for
    inspection and benchmarks."""

    def __init__(self, interpreter, iomap: IOMap):
        self.interpreter, self.iomap = interpreter, iomap
        self._signature = interpreter.get_signature_runner(iomap.signature_key)
        self._in, self._out = self._signature.get_input_details(), self._signature.get_output_details()

    def __call__(self, inputs: InputSet) -> dict[str, np.ndarray]:
        missing = [m.source for m in self.iomap.inputs if m.source not in inputs]
        if missing:
            raise TargetError(f"TFLite: no value given for model input(s) {missing}")
        feeds = {m.key: _to_tflite(m, inputs[m.source], self._in[m.key]) for m in self.iomap.inputs}
        try:
            got = self._signature(**feeds)
        except Exception as e:
            raise TargetError(f"TFLite interpreter failed to run the model: {first_line(e)}") from e
        return {m.source: _to_source(m, got[m.key], self._out[m.key]) for m in self.iomap.outputs}


def tflite_runner(model: bytes | str | os.PathLike, *, num_threads: int | None = None) -> TFLiteRunner:
    """A runner over a .tflite file or its bytes (the ``forgeml.io`` map in it names the tensors).

    A .tflite without the map (not written by forgeml) runs with its serving signature's names
    and layouts as they are.
    """
    require("ai_edge_litert", "tflite")
    from ai_edge_litert.interpreter import Interpreter

    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    try:
        iomap = read(data)
        with native_quiet():
            interp = Interpreter(model_content=data, num_threads=num_threads)
            interp.allocate_tensors()  # applies the default (XNNPACK) delegate, which logs natively
            sigs = interp.get_signature_list()
    except Exception as e:
        raise TargetError(f"TFLite interpreter could not load the model: {first_line(e)}") from e
    if iomap is None:
        iomap = _identity_map(sigs)
    if iomap.signature_key not in sigs:
        raise TargetError(f"TFLite model has no signature {iomap.signature_key!r} (it has {sorted(sigs)})")
    return TFLiteRunner(interp, iomap)


def _to_tflite(m: TensorMap, a: np.ndarray, detail: dict) -> np.ndarray:
    a = m.to_tflite(np.asarray(a))
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail.get("quantization", (0.0, 0))
    if dtype.kind in "iu" and a.dtype.kind == "f" and scale:
        info = np.iinfo(dtype)
        a = np.clip(np.round(a / scale + zero), info.min, info.max)
    return np.ascontiguousarray(a.astype(dtype))


def _to_source(m: TensorMap, a: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail.get("quantization", (0.0, 0))
    if a.dtype.kind in "iu" and scale and (m.source_dtype or "float32").startswith("float"):
        a = (a.astype(np.float32) - zero) * np.float32(scale)
    a = m.to_source(a)
    if m.source_dtype and a.dtype.name != m.source_dtype:
        a = a.astype(m.source_dtype)
    return a


def _identity_map(sigs: dict) -> IOMap:
    if not sigs:
        raise TargetError("TFLite model has no serving signature to run it by")
    key = "serving_default" if "serving_default" in sigs else sorted(sigs)[0]
    s = sigs[key]
    return IOMap(tuple(TensorMap(n, n, None) for n in s["inputs"]),
                 tuple(TensorMap(n, n, None) for n in s["outputs"]), key)
