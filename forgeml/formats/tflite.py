"""The name and layout map between a source model and its .tflite, stored inside the .tflite.

onnx2tf makes image inputs channel-last (NCHW → NHWC) and TFLite names signature entries its own
way, so a .tflite alone does not say which of its tensors is which source input, nor how to lay an
array out for it. forgeml writes that map into the flatbuffer's ``metadata`` table under the name
``forgeml.io`` (a UTF-8 JSON document), so the artifact is self-describing: the parity runner and
``forgeml inspect`` read it back from the one file, and runtimes ignore metadata they don't know.

``perm`` follows numpy: ``tflite_array = source_array.transpose(perm)``; ``None`` means the same layout.
Only ``flatbuffers`` and ai-edge-litert's generated schema are needed to read it (no TensorFlow).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from forgeml.formats import jsontext
from forgeml.errors import InputError, TargetError, require_file

METADATA_NAME = "forgeml.io"
SIGNATURE_KEY = "serving_default"


@dataclass(frozen=True)
class TensorMap:
    source: str  # the source model's (ONNX IR's) tensor name
    key: str  # its name in the TFLite serving signature
    perm: tuple[int, ...] | None  # tflite = source.transpose(perm); None: same layout
    source_shape: tuple = ()
    tflite_shape: tuple = ()
    source_dtype: str = ""
    tflite_dtype: str = ""

    def to_tflite(self, a: np.ndarray) -> np.ndarray:
        return a if self.perm is None else a.transpose(self.perm)

    def to_source(self, a: np.ndarray) -> np.ndarray:
        return a if self.perm is None else a.transpose(np.argsort(self.perm))

    def to_json(self) -> dict:
        d = asdict(self)
        d["perm"] = list(self.perm) if self.perm is not None else None
        d["source_shape"], d["tflite_shape"] = list(self.source_shape), list(self.tflite_shape)
        return d

    @classmethod
    def from_json(cls, d: dict) -> TensorMap:
        perm = d.get("perm")
        return cls(d["source"], d["key"], tuple(perm) if perm is not None else None,
                   tuple(d.get("source_shape", ())), tuple(d.get("tflite_shape", ())),
                   d.get("source_dtype", ""), d.get("tflite_dtype", ""))

    @property
    def layout(self) -> str:
        """A short human description of the layout change, e.g. ``NCHW→NHWC``."""
        if self.perm is None or list(self.perm) == sorted(self.perm):
            return "same"
        letters = {3: "NCW", 4: "NCHW", 5: "NCDHW"}.get(len(self.perm))
        if letters is None:
            return f"transpose{list(self.perm)}"
        return f"{letters}→{''.join(letters[i] for i in self.perm)}"


@dataclass(frozen=True)
class IOMap:
    inputs: tuple[TensorMap, ...]
    outputs: tuple[TensorMap, ...]
    signature_key: str = SIGNATURE_KEY
    info: dict = field(default_factory=dict)  # variant, route, calibration: what made this file

    def to_json(self) -> dict:
        return {"format": 1, "signature_key": self.signature_key,
                "inputs": [t.to_json() for t in self.inputs], "outputs": [t.to_json() for t in self.outputs],
                "info": self.info}

    @classmethod
    def from_json(cls, d: dict) -> IOMap:
        return cls(tuple(TensorMap.from_json(t) for t in d["inputs"]),
                   tuple(TensorMap.from_json(t) for t in d["outputs"]),
                   d.get("signature_key", SIGNATURE_KEY), d.get("info", {}))


def embed(model: bytes, iomap: IOMap, renames: dict[str, str] | None = None) -> bytes:
    """The model with ``iomap`` in its metadata (replacing an older one) and its signature's I/O
    tensors renamed to the source names, so tools that show tensor names show the source's.
    ``renames`` first renames signature entries (converters that pick their own entry names)."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    m = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    m.metadata = [md for md in (m.metadata or []) if _s(md.name) != METADATA_NAME]
    m.buffers.append(fb.BufferT())
    m.buffers[-1].data = np.frombuffer(json.dumps(iomap.to_json(), sort_keys=True).encode(), dtype=np.uint8)
    md = fb.MetadataT()
    md.name, md.buffer = METADATA_NAME, len(m.buffers) - 1
    m.metadata.append(md)
    for sig in m.signatureDefs or []:
        if _s(sig.signatureKey) != iomap.signature_key:
            continue
        for tm in [*sig.inputs, *sig.outputs]:
            tm.name = (renames or {}).get(_s(tm.name), _s(tm.name))
        keys = {_s(tm.name) for tm in [*sig.inputs, *sig.outputs]}
        missing = [t.key for t in (*iomap.inputs, *iomap.outputs) if t.key not in keys]
        if missing:
            raise TargetError(f"tflite: the converter's signature has no entries {missing} (it has {sorted(keys)})")
        sub = m.subgraphs[sig.subgraphIndex]
        by_key = {t.key: t.source for t in (*iomap.inputs, *iomap.outputs)}
        names = [_s(t.name) for t in sub.tensors]
        for tm in [*sig.inputs, *sig.outputs]:
            want = by_key.get(_s(tm.name))
            if want and want not in names:  # never create two tensors with one name
                names[tm.tensorIndex] = want
                sub.tensors[tm.tensorIndex].name = want
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def read(model: bytes) -> IOMap | None:
    """The ``forgeml.io`` map of a .tflite, or None when it has none (not written by forgeml)."""
    m = _root(model)
    for i in range(m.MetadataLength()):
        md = m.Metadata(i)
        if _s(md.Name()) == METADATA_NAME:
            data = m.Buffers(md.Buffer()).DataAsNumpy()
            if isinstance(data, int):  # empty buffer
                return None
            return IOMap.from_json(jsontext.loads(bytes(data)))
    return None


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else (v or "")


def _root(model: bytes):
    from ai_edge_litert import schema_py_generated as fb

    if len(model) < 8 or model[4:8] != b"TFL3":
        raise InputError("not a TFLite model (no TFL3 file identifier: corrupt, truncated or another format)")
    try:
        return fb.Model.GetRootAs(model, 0)
    except Exception as e:  # flatbuffers raises several types on garbage
        raise InputError(f"not a readable TFLite model ({type(e).__name__}: {e})") from e


_TYPES = None


def _type_name(code: int) -> str:
    global _TYPES
    if _TYPES is None:
        from ai_edge_litert import schema_py_generated as fb

        _TYPES = {v: k.lower() for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    name = _TYPES.get(code, str(code))
    return {"float32": "float32", "float16": "float16"}.get(name, name)


def _bounded(size: int):
    """A check for vector lengths read from a flatbuffer: none can hold more items than the file has
    bytes, and a corrupt length would otherwise loop for billions of items."""
    def n(count: int) -> int:
        if count < 0 or count > size:
            raise InputError(f"a vector length {count} larger than the {size}-byte file (corrupt flatbuffer)")
        return count

    return n


def describe(path: Path) -> dict:
    """What ``forgeml inspect model.tflite`` shows: signature, tensors, ops and the forgeml map."""
    from collections import Counter

    from ai_edge_litert import schema_py_generated as fb

    data = require_file(path).read_bytes()
    n = _bounded(len(data))
    try:
        m = _root(data)
        ops_by_code = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
        codes = []
        for i in range(n(m.OperatorCodesLength())):
            oc = m.OperatorCodes(i)
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            custom = _s(oc.CustomCode())
            codes.append(f"custom:{custom}" if custom else ops_by_code.get(code, str(code)))
        sub = m.Subgraphs(0)

        def tensor(i: int) -> dict:
            t = sub.Tensors(i)
            shape = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else t.ShapeAsNumpy()
            shape = [] if isinstance(shape, int) else [int(d) if d >= 0 else None for d in shape]
            out = {"name": _s(t.Name()), "index": i, "shape": shape, "dtype": _type_name(t.Type())}
            q = t.Quantization()
            if q is not None and q.ScaleLength():
                out["quantization"] = {"scale": float(q.Scale(0)), "zero_point": int(q.ZeroPoint(0)),
                                       "channels": q.ScaleLength()}
            return out

        ops = Counter(codes[sub.Operators(j).OpcodeIndex()] for j in range(n(sub.OperatorsLength())))
        types = Counter(_type_name(sub.Tensors(i).Type()) for i in range(n(sub.TensorsLength())))
        signatures = {}
        for k in range(n(m.SignatureDefsLength())):
            sd = m.SignatureDefs(k)
            signatures[_s(sd.SignatureKey())] = {
                "inputs": {_s(sd.Inputs(j).Name()): tensor(sd.Inputs(j).TensorIndex()) for j in range(n(sd.InputsLength()))},
                "outputs": {_s(sd.Outputs(j).Name()): tensor(sd.Outputs(j).TensorIndex())
                            for j in range(n(sd.OutputsLength()))},
            }
        metadata = {}
        for i in range(n(m.MetadataLength())):
            b = m.Buffers(m.Metadata(i).Buffer())
            metadata[_s(m.Metadata(i).Name())] = f"{b.DataLength() or b.Size()} bytes"
        params = 0
        for i in range(n(sub.TensorsLength())):
            t = sub.Tensors(i)
            b = m.Buffers(t.Buffer())
            if b is not None and (b.DataLength() or b.Size()):
                shape = t.ShapeAsNumpy()
                params += int(np.prod(shape)) if not isinstance(shape, int) else 1
        iomap = read(data)
        info = {
            "format": "tflite",
            "path": str(path),
            "bytes": len(data),
            "schema_version": m.Version(),
            "description": _s(m.Description()),
            "subgraphs": m.SubgraphsLength(),
            "inputs": [tensor(sub.Inputs(i)) for i in range(n(sub.InputsLength()))],
            "outputs": [tensor(sub.Outputs(i)) for i in range(n(sub.OutputsLength()))],
            "signatures": signatures,
            "operators": sub.OperatorsLength(),
            "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
            "tensor_types": dict(types),
            "tensors": sub.TensorsLength(),
            "parameters": params,
            "metadata": metadata,
        }
        if iomap is not None:
            info["metadata"][METADATA_NAME] = "the source ↔ TFLite map (see mapping)"
            info["forgeml_io"] = iomap.to_json()
            for k in ("variant", "why", "route"):
                if k in iomap.info:
                    info[k] = iomap.info[k]
            info["mapping"] = [
                f"{kind} {t.source} {list(t.source_shape)} {t.source_dtype} ↔ signature '{t.key}' "
                f"{list(t.tflite_shape)} {t.tflite_dtype} ({t.layout})"
                for kind, ts in (("input", iomap.inputs), ("output", iomap.outputs)) for t in ts
            ]
    except InputError as e:
        raise InputError(f"{path}: {e}") from e
    except Exception as e:
        raise InputError(f"{path}: not a readable TFLite model ({type(e).__name__}: {str(e)[:200]})") from e
    return info
