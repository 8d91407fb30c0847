"""ONNX → ONNX IR. The reference is onnxruntime on the file exactly as given.

External data is never read into the ModelProto: the IR's weights are ``onnx_ir.ExternalTensor``s that
map the (checked) data files on first use, so a model past protobuf's 2 GB limit imports like any other
and its weights are in memory once at most, never twice."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forgeml.ir import ConvertResult

from forgeml.converters.base import ImportOptions
from forgeml.errors import InputError, first_line
from forgeml.formats import onnx_file
from forgeml.ir import IRModel, Provenance, is_large, sha256_arrays, sha256_file, signature_of
from forgeml.runtime import InputSet
from forgeml.parity.inputs import check_inputs, example_from_spec
from forgeml.runtime.ort import ort_runner, ort_runner_for_ir


def load_onnx(path: Path, *, external: bool = True):
    """onnx.load with the errors users hit turned into one line each; ``external=False`` leaves external
    data in its files (checked, not read)."""
    from google.protobuf.message import DecodeError

    try:
        proto = onnx_file.load(path, external=external)  # refuses special files and data outside the model's dir
    except (DecodeError, ValueError, RuntimeError) as e:
        raise InputError(f"{path}: not a valid ONNX model (corrupt or truncated protobuf: {e})") from e
    except FileNotFoundError as e:
        raise InputError(f"{path}: its external data file is missing: {e}") from e
    if not proto.graph.node and not proto.graph.output:
        raise InputError(f"{path}: not a valid ONNX model (empty graph: corrupt or truncated file?)")
    return proto


class OnnxWeights:
    """Initializers by name (external ones mapped from their files); ``runner_with`` swaps others in and
    runs onnxruntime."""

    def __init__(self, model):
        import onnx

        self.framework = f"onnx {onnx.__version__}"
        self._model = model  # the imported onnx_ir.Model, never changed

    def named(self) -> dict[str, np.ndarray]:
        return {name: v.const_value.numpy() for name, v in self._model.graph.initializers.items()
                if v.const_value is not None}

    def runner_with(self, weights: dict[str, np.ndarray]):
        import onnx_ir

        model = self._model.clone()  # shares the tensors; only the replaced ones are new
        for name, value in model.graph.initializers.items():
            if name in weights:
                value.const_value = onnx_ir.Tensor(np.ascontiguousarray(weights[name]), name=name)
        return ort_runner_for_ir(model)


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
            proto = load_onnx(source, external=False)
            digest = sha256_file(source)
            external = bool(onnx_file.external_refs(proto))
        else:
            proto, digest, external = source, "", False
        try:
            # With external data the checker reads the file by path (it checks the data files there, and
            # a proto past 2 GB could not be handed to it serialized).
            onnx.checker.check_model(str(source) if external else proto)
        except onnx.checker.ValidationError as e:
            raise InputError(f"{ref}: the ONNX checker rejects the model: {first_line(e)}") from e
        model = onnx_ir.serde.deserialize_model(proto)
        if external:
            from onnx_ir.external_data import set_base_dir

            set_base_dir(model.graph, source.resolve().parent)  # weights map from their files when first used
        sig = _dynamic_negative_dims(signature_of(model))
        if not sig.inputs:
            raise InputError(f"{ref}: the model has no inputs (its outputs are constants); forgeml checks parity by "
                             f"running the model on inputs, so there is nothing to convert or compare")
        _check_tensor_inputs(proto, ref)
        _check_numpy_dtypes(sig, ref)
        weights = OnnxWeights(model)
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
            reference=ort_runner(source if isinstance(source, Path) else proto.SerializeToString(),
                                 low_memory=is_large(model)),
            reference_name="onnxruntime on the source .onnx",
            example_inputs=dict(example_inputs),
            weights=weights,
            source_model=proto,
        )
