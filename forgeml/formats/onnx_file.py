"""The one way forgeml opens an .onnx file: special files refused, external data kept inside the
model's directory, every external range checked against its file before onnx reads it.

An ONNX tensor stored outside the protobuf names its file by a ``location`` relative to the model's
directory. A hostile model can name ``../../x``, ``/etc/passwd`` or a symlink that leads out of the
directory, and onnx would read that file into a weight (and so into an artifact or a parity log).
``check_external_data`` refuses such a model with one line naming the model, the tensor and the
location; ``load`` checks first and only then reads the data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from forgeml.errors import InputError, require_file


@dataclass(frozen=True)
class ExternalRef:
    tensor: str
    location: str
    offset: int
    length: int | None  # None: to the end of the file


def _tensors(graph):
    """Every TensorProto in a graph: initializers, sparse ones, Constant values, subgraphs."""
    yield from graph.initializer
    for s in graph.sparse_initializer:
        yield s.values
        yield s.indices
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("g"):
                yield from _tensors(a.g)
            for g in a.graphs:
                yield from _tensors(g)


def external_refs(proto) -> list[ExternalRef]:
    """The tensors of ``proto`` whose data lives in another file, with where it says it is."""
    from onnx import TensorProto

    out = []
    for t in _tensors(proto.graph):
        if t.data_location != TensorProto.EXTERNAL and not t.external_data:
            continue
        info = {e.key: e.value for e in t.external_data}
        try:
            offset = int(info.get("offset") or 0)
            length = int(info["length"]) if info.get("length") else None
        except ValueError:
            raise InputError(f"tensor {t.name!r}: external data offset/length are not integers "
                             f"({info.get('offset')!r}, {info.get('length')!r})") from None
        out.append(ExternalRef(t.name, info.get("location", ""), offset, length))
    return out


def _undecodable(msg, where: str = "") -> str | None:
    """The first string field holding bytes that are not UTF-8 (protobuf hands those back as
    ``bytes``, which every later ``name + "..."`` would trip over), or None."""
    from google.protobuf.descriptor import FieldDescriptor as F

    for fd, value in msg.ListFields():
        if fd.type == F.TYPE_STRING:
            values = value if _repeated(fd) else (value,)
            if any(isinstance(v, bytes) for v in values):
                return f"{where}{fd.name}"
        elif fd.type == F.TYPE_MESSAGE:
            for v in (value if _repeated(fd) else (value,)):
                bad = _undecodable(v, f"{where}{fd.name}.")
                if bad:
                    return bad
    return None


def _repeated(fd) -> bool:
    return fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED


def check_types(proto, model_path: Path) -> None:
    """``InputError`` for an element type onnx does not know on the graph's inputs, outputs, value
    infos or initializers (every later ``tensor_dtype_to_np_dtype`` would raise KeyError)."""
    from onnx import TensorProto
    from onnx.helper import tensor_dtype_to_np_dtype

    known = set(TensorProto.DataType.values())
    g = proto.graph
    for kind, values in (("input", g.input), ("output", g.output), ("value info", g.value_info)):
        for v in values:
            if v.type.HasField("tensor_type"):
                code = v.type.tensor_type.elem_type
                if code and code not in known:
                    raise InputError(f"{model_path}: {kind} {v.name!r} has unknown element type {code} "
                                     "(corrupt file, or a newer ONNX than this onnx knows)")
                if code:
                    try:
                        tensor_dtype_to_np_dtype(code)
                    except (KeyError, ValueError, TypeError):
                        raise InputError(f"{model_path}: {kind} {v.name!r} has element type {code}, which has "
                                         "no numpy equivalent") from None
    for t in g.initializer:
        if t.data_type not in known or t.data_type == 0:
            raise InputError(f"{model_path}: initializer {t.name!r} has unknown element type {t.data_type} "
                             "(corrupt file?)")


MAX_CONSTANT_BYTES = 4 << 30  # what one ConstantOfShape/Expand with a constant shape may ask for


def check_constant_shapes(proto, model_path: Path) -> None:
    """``InputError`` for a node that builds a tensor of a constant shape larger than
    ``MAX_CONSTANT_BYTES`` (a ``ConstantOfShape`` bomb: a few bytes in the file, terabytes at run time),
    refused before any runtime allocates it."""
    import math

    from onnx import numpy_helper

    consts = {t.name: t for t in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "Constant" and n.output:
            for a in n.attribute:
                if a.name == "value" and a.HasField("t"):
                    consts[n.output[0]] = a.t
    for n in proto.graph.node:
        if n.op_type not in ("ConstantOfShape", "Expand") or n.domain not in ("", "ai.onnx"):
            continue
        shape_in = n.input[0] if n.op_type == "ConstantOfShape" else (n.input[1] if len(n.input) > 1 else "")
        t = consts.get(shape_in)
        if t is None or t.data_location == 1 or len(t.dims) != 1 or t.dims[0] > 64:
            continue
        try:
            dims = [int(d) for d in numpy_helper.to_array(t).ravel()]
        except (ValueError, TypeError):
            continue
        nbytes = math.prod(max(d, 0) for d in dims) * 4
        if nbytes > MAX_CONSTANT_BYTES:
            raise InputError(f"{model_path}: node {n.name or n.output[0]!r} ({n.op_type}) builds a tensor of shape "
                             f"{dims}, {nbytes / 2**30:.3g} GiB (the bound is {MAX_CONSTANT_BYTES >> 30} GiB); refused")


def _outside(location: str) -> bool:
    if not location or "\x00" in location:
        return True
    if os.path.isabs(location) or location.startswith(("/", "\\")) or (len(location) > 1 and location[1] == ":"):
        return True
    parts = location.replace("\\", "/").split("/")
    return ".." in parts


def check_external_data(proto, model_path: Path) -> None:
    """``InputError`` unless every external location stays inside the model's directory (symlinks
    resolved), names a regular file, and its offset and length fit that file."""
    model_path = Path(model_path)
    base = model_path.resolve().parent
    try:
        refs = external_refs(proto)
    except InputError as e:
        raise InputError(f"{model_path}: {e}") from None
    for r in refs:
        where = f"{model_path}: tensor {r.tensor!r} has external data at {r.location!r}"
        if not r.location:
            raise InputError(f"{model_path}: tensor {r.tensor!r} is marked external but names no `location` "
                             "(corrupt file?)")
        if _outside(r.location):
            raise InputError(f"{where}, outside the model's directory; refused (external data must be a "
                             "relative path inside the directory that holds the .onnx file)")
        target = (base / r.location).resolve()
        if base not in target.parents:
            raise InputError(f"{where}, which leads outside the model's directory (a symlink?); refused")
        try:
            require_file(target, empty_ok=True)
        except InputError as e:
            raise InputError(f"{where}: {str(e).removeprefix(str(target) + ': ')}") from None
        size = target.stat().st_size
        end = r.offset + (r.length if r.length is not None else 0)
        if r.offset < 0 or (r.length is not None and r.length < 0) or end > size:
            raise InputError(f"{where}: bytes {r.offset}..{end} do not fit the {size}-byte file "
                             "(truncated or corrupt external data)")


def load(path: Path, *, external: bool = True):
    """The ModelProto of ``path``; with ``external`` its external data read in after the check."""
    import onnx
    from google.protobuf.message import DecodeError

    path = require_file(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a valid ONNX model (corrupt or truncated protobuf: "
                         f"{type(e).__name__}: {str(e)[:200]})") from e
    if not proto.graph.node and not proto.graph.output:
        raise InputError(f"{path}: not a valid ONNX model (empty graph: corrupt or truncated file?)")
    bad = _undecodable(proto)
    if bad:
        raise InputError(f"{path}: not a valid ONNX model (field `{bad}` is not UTF-8 text: corrupt file?)")
    check_types(proto, path)
    check_external_data(proto, path)
    check_constant_shapes(proto, path)
    if external and external_refs(proto):
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(proto, str(path.resolve().parent))
        except (OSError, ValueError, RuntimeError) as e:
            raise InputError(f"{path}: cannot read its external data ({type(e).__name__}: {str(e)[:200]})") from e
    return proto
