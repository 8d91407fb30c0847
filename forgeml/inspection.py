"""``forgeml inspect FILE``: what an artifact holds, read without running it.

Readers are chosen by suffix from ``INSPECTORS``; each returns a plain dict the CLI prints and
``--json`` dumps. Weights are not loaded: safetensors headers are parsed directly, ONNX external
data is left on disk.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from forgeml.errors import InputError


def inspect_onnx(path: Path) -> dict:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise InputError(f"{path}: not a valid ONNX model (corrupt or truncated: {e})") from e
    if not proto.graph.node and not proto.graph.output:
        raise InputError(f"{path}: not a valid ONNX model (empty graph: corrupt or truncated file?)")
    g = proto.graph
    inits = {t.name for t in g.initializer}

    def spec(v):
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "?"
        return {"name": v.name, "shape": dims, "dtype": dtype}

    params = sum(int(np.prod(t.dims)) for t in g.initializer)
    ops = Counter((n.domain + "::" if n.domain else "") + n.op_type for n in g.node)
    return {
        "format": "onnx",
        "path": str(path),
        "bytes": path.stat().st_size,
        "ir_version": proto.ir_version,
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "opsets": {(o.domain or "ai.onnx"): o.version for o in proto.opset_import},
        "inputs": [spec(v) for v in g.input if v.name not in inits],
        "outputs": [spec(v) for v in g.output],
        "nodes": len(g.node),
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "initializers": len(g.initializer),
        "parameters": params,
        "external_data": sorted({e.value for t in g.initializer for e in t.external_data if e.key == "location"}),
        "metadata": {p.key: p.value for p in proto.metadata_props},
    }


def inspect_safetensors(path: Path) -> dict:
    """Parse the header (forgeml.safetensors_io checks its offsets against the file) and summarise it."""
    from forgeml.safetensors_io import read_header

    h = read_header(path)
    tensors, params, dtypes = [], 0, Counter()
    for name, e in sorted(h.tensors.items()):
        count = int(np.prod(e.shape)) if e.shape else 1
        params += count
        dtypes[e.dtype] += 1
        tensors.append({"name": name, "dtype": e.dtype, "shape": list(e.shape), "bytes": e.nbytes})
    return {"format": "safetensors", "path": str(path), "bytes": h.size, "tensors": len(tensors),
            "parameters": params, "dtypes": dict(dtypes), "metadata": h.metadata, "tensor_table": tensors}


def inspect_gguf(path: Path) -> dict:
    from forgeml.targets.gguf_inspect import inspect_gguf as read

    return read(path)


def inspect_tflite(path: Path) -> dict:
    """Signature, tensors, ops, and the source↔TFLite name/layout map forgeml stores in the file."""
    from forgeml.targets.tflite_io import describe

    return describe(path)


INSPECTORS = {".onnx": inspect_onnx, ".safetensors": inspect_safetensors, ".tflite": inspect_tflite,
              ".gguf": inspect_gguf}


def inspect_file(path: Path) -> dict:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    reader = INSPECTORS.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"{path}: cannot inspect {path.suffix or 'suffix-less'} files; known: {', '.join(INSPECTORS)}")
    return reader(path)
