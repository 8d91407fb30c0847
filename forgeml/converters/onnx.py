"""ONNX → ONNX IR. The reference is onnxruntime on the file exactly as given."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forgeml.ir import ConvertResult

from forgeml.converters.base import ImportOptions
from forgeml.errors import InputError, first_line
from forgeml.formats import onnx_file
from forgeml.ir import IRModel, Provenance, sha256_arrays, sha256_file, signature_of
from forgeml.runtime import InputSet
from forgeml.parity.inputs import check_inputs, example_from_spec
from forgeml.runtime.ort import ort_runner


def load_onnx(path: Path):
    """onnx.load with the errors users hit turned into one line each."""
    from google.protobuf.message import DecodeError

    try:
        proto = onnx_file.load(path)  # refuses special files and external data outside the model's dir
    except (DecodeError, ValueError, RuntimeError) as e:
        raise InputError(f"{path}: not a valid ONNX model (corrupt or truncated protobuf: {e})") from e
    except FileNotFoundError as e:
        raise InputError(f"{path}: its external data file is missing: {e}") from e
    if not proto.graph.node and not proto.graph.output:
        raise InputError(f"{path}: not a valid ONNX model (empty graph: corrupt or truncated file?)")
    return proto


class OnnxWeights:
    """Initializers by name; ``runner_with`` swaps them into the model and runs onnxruntime."""

    def __init__(self, proto):
        import onnx

        self.framework = f"onnx {onnx.__version__}"
        self._proto = proto

    def named(self) -> dict[str, np.ndarray]:
        from onnx import numpy_helper

        return {t.name: numpy_helper.to_array(t) for t in self._proto.graph.initializer}

    def runner_with(self, weights: dict[str, np.ndarray]):
        from onnx import numpy_helper

        proto = type(self._proto)()
        proto.CopyFrom(self._proto)
        for t in proto.graph.initializer:
            if t.name in weights:
                t.CopyFrom(numpy_helper.from_array(np.asarray(weights[t.name]), t.name))
        return ort_runner(proto.SerializeToString())


def _dynamic_negative_dims(sig):
    """``-1`` dims (paddle2onnx, older exporters) mean "any size": dynamic (None), not fixed."""
    from dataclasses import replace

    def fix(spec):
        return replace(spec, shape=tuple(None if isinstance(d, int) and d < 0 else d for d in spec.shape))

    return replace(sig, inputs=tuple(fix(s) for s in sig.inputs), outputs=tuple(fix(s) for s in sig.outputs))


def _check_tensor_inputs(proto, ref: str) -> None:
    """A sequence, optional or map input or output is refused in one line: parity feeds and compares
    tensors (an input's missing element type read as float32 and got a made-up tensor; a sequence
    output of unequal tensors broke the comparison)."""
    init = {t.name for t in proto.graph.initializer}
    for where, values in (("input", [i for i in proto.graph.input if i.name not in init]),
                          ("output", list(proto.graph.output))):
        for i in values:
            kind = i.type.WhichOneof("value")
            if kind not in (None, "tensor_type"):
                what = {"sequence_type": "a sequence", "optional_type": "an optional", "map_type": "a map",
                        "sparse_tensor_type": "a sparse tensor"}.get(kind, kind)
                raise InputError(f"{ref}: {where} {i.name!r} is {what}, not a tensor; forgeml feeds and compares "
                                 "models through tensors only, so it cannot run this one")


_FEEDABLE = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
             "uint64", "bool", "object", "complex64", "complex128"}  # object: STRING


def _check_numpy_dtypes(sig, ref: str) -> None:
    """Parity feeds numpy arrays: an input of an element type onnxruntime cannot take from numpy
    (bfloat16, float8e4m3fn, float4e2m1, int4 …) is refused in one line instead of failing in the
    reference run. (Outputs of such types come back from onnxruntime as arrays it can compare.)"""
    for spec in sig.inputs:
        if spec.dtype not in _FEEDABLE:
            raise InputError(f"{ref}: input {spec.name!r} has element type {spec.dtype}, which onnxruntime's Python "
                             "API cannot take from numpy; forgeml feeds models numpy arrays, so it cannot run "
                             "this one")


class OnnxConverter:
    name = "onnx"
    suffixes = (".onnx",)
    invents_examples = True  # without example inputs it draws them from the signature (the user's replace them)

    def accepts(self, obj: object) -> bool:
        return type(obj).__name__ == "ModelProto" and type(obj).__module__.startswith("onnx")

    def convert(self, source, example_inputs: InputSet | None, ref: str,
                options: ImportOptions) -> ConvertResult:
        import onnx
        import onnx_ir

        if isinstance(source, Path):
            proto = load_onnx(source)
            digest = sha256_file(source)
        else:
            proto = source
            digest = ""
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as e:
            raise InputError(f"{ref}: the ONNX checker rejects the model: {first_line(e)}") from e
        model = onnx_ir.serde.deserialize_model(proto)
        sig = _dynamic_negative_dims(signature_of(model))
        if not sig.inputs:
            raise InputError(f"{ref}: the model has no inputs (its outputs are constants); forgeml checks parity by "
                             f"running the model on inputs, so there is nothing to convert or compare")
        _check_tensor_inputs(proto, ref)
        _check_numpy_dtypes(sig, ref)
        weights = OnnxWeights(proto)
        if not digest:
            digest = sha256_arrays(weights.named())
        if example_inputs is None:
            specs = {s.name: s for s in options.input_specs}
            rng = np.random.default_rng(0)
            example_inputs = {s.name: example_from_spec(specs.get(s.name, s), rng) for s in sig.inputs}
        check_inputs(example_inputs, sig, "example inputs")
        provenance = Provenance("onnx", ref, digest, f"onnx {onnx.__version__}", "onnx")
        return ConvertResult(
            ir=IRModel(model, sig, provenance),
            reference=ort_runner(source if isinstance(source, Path) else proto.SerializeToString()),
            reference_name="onnxruntime on the source .onnx",
            example_inputs=dict(example_inputs),
            weights=weights,
            source_model=proto,
        )
