"""safetensors: the source model's weights under the source framework's own parameter names.

Parity for this target loads the file back into the *source* model (in its own framework) and
compares its outputs with the original's, so a wrong name, dtype or transposition is caught.

The file is written by our own streaming writer rather than ``safetensors.numpy.save``: that one
orders the metadata through a hash map, so the same weights gave different bytes on every run,
and it builds the whole file in memory. The safetensors library still reads every file back.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from forgeml.errors import InputError, TargetError
from forgeml.fileio import atomic_writer
from forgeml.targets.base import Artifact, OpenContext, Opened, TargetContext, checked

_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
           "int16": "I16", "int8": "I8", "uint8": "U8", "uint16": "U16", "uint32": "U32", "uint64": "U64",
           "bool": "BOOL"}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Deterministic, streaming safetensors writer: tensors in name order, metadata keys sorted,
    header padded to 8 bytes; written to a temp file and renamed into place."""
    header: dict = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    offset = 0
    for name in sorted(tensors):
        a = tensors[name]
        code = _DTYPES.get(a.dtype.name)
        if code is None:
            raise TargetError(f"safetensors: tensor {name!r} has dtype {a.dtype}, which safetensors cannot hold")
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with atomic_writer(path) as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for name in sorted(tensors):
            a = tensors[name]
            a = a.astype(a.dtype.newbyteorder("<"), copy=False)
            f.write(np.ascontiguousarray(a).tobytes())


class SafetensorsTarget:
    suffixes = (".safetensors",)

    def inspect(self, path: Path) -> dict:
        return inspect_safetensors(path)

    def open(self, path: Path, ctx: OpenContext) -> Opened:
        """Weights without a graph: they run inside the model ``ctx`` names, loaded into it."""
        from safetensors.numpy import load_file

        if ctx.source is None:
            raise InputError(f"{path}: a .safetensors file holds weights, not a model; name the model they belong "
                             "to with `model` (zoo:NAME, python:mod:fn, or a model file)")
        converted = ctx.source()
        if converted.weights is None:
            raise InputError(f"`model` {ctx.model}: its converter cannot load other weights into it")
        runner = converted.weights.runner_with(load_file(str(path)))
        return Opened(checked(runner, path), converted.ir.signature, f"{converted.weights.framework} with {path.name}'s weights",
                      None, converted.example_inputs)

    name = "safetensors"
    opens_alone = False  # open() needs the model the weights belong to (OpenContext.source)
    reads_ir = False  # written from the source's named weights (``ctx.weights``), never from the IR
    Config = None
    filename = "model.safetensors"

    def build(self, ir, out_dir: Path, ctx: TargetContext) -> Artifact:
        if ctx.weights is None:
            raise TargetError(f"safetensors: the {ir.provenance.kind} source has no named weights to write")
        tensors = ctx.weights.named()
        if not tensors:
            raise TargetError("safetensors: the source model has no weights")
        dtypes = sorted({str(a.dtype) for a in tensors.values()})
        metadata = {
            "format": "pt" if ir.provenance.kind == "torch" else ir.provenance.kind,
            "source": ir.provenance.ref,
            "source_sha256": ir.provenance.sha256,
            "framework": ctx.weights.framework,
            "dtype": dtypes[0] if len(dtypes) == 1 else "mixed:" + ",".join(dtypes),
            "shapes": json.dumps({k: list(v.shape) for k, v in sorted(tensors.items())}, separators=(",", ":")),
            "producer": f"forgeml {ctx.forgeml_version}",
        }
        path = out_dir / self.filename
        write_safetensors(path, tensors, metadata)
        params = int(sum(a.size for a in tensors.values()))
        return Artifact(self.name, path, [path], runtime=f"{ctx.weights.framework} (weights loaded back)",
                        metadata={"tensors": len(tensors), "parameters": params})

    def runner(self, artifact: Artifact, ctx: TargetContext):
        from safetensors.numpy import load_file

        weights = load_file(str(artifact.path))
        # The weights are the source's own, so judge by the source's precision: fp32 strict.
        return checked(ctx.weights.runner_with(weights), artifact.path), "fp32"


def inspect_safetensors(path: Path) -> dict:
    """Parse the header (forgeml.formats.safetensors checks its offsets against the file) and summarise it."""
    from forgeml.formats.safetensors import read_header

    h = read_header(path)
    tensors, params, dtypes = [], 0, Counter()
    for name, e in sorted(h.tensors.items()):
        count = int(np.prod(e.shape)) if e.shape else 1
        params += count
        dtypes[e.dtype] += 1
        tensors.append({"name": name, "dtype": e.dtype, "shape": list(e.shape), "bytes": e.nbytes})
    return {"format": "safetensors", "path": str(path), "bytes": h.size, "tensors": len(tensors),
            "parameters": params, "dtypes": dict(dtypes), "metadata": h.metadata, "tensor_table": tensors}
