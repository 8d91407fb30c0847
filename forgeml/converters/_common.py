"""Helpers the converters share."""

from __future__ import annotations

from forgeml.errors import ConversionError
from forgeml.ir import IRModel, Provenance, signature_of


def ir_from_proto(proto, input_names: list[str], output_names: list[str], provenance: Provenance,
                  stage: str) -> IRModel:
    """The IR of a converted ``ModelProto``, refused when its graph's names are not the source's.

    Parity matches outputs by name, so a converter that renamed anything would compare the wrong tensors.
    ``stage`` names the step in the error, e.g. "sklearn->onnx".
    """
    import onnx_ir

    _sort_opset_imports(proto)
    model = onnx_ir.serde.deserialize_model(proto)
    sig = signature_of(model)
    if sig.input_names != input_names or sig.output_names != output_names:
        raise ConversionError(f"{stage}: the converted graph's names {sig.input_names} -> {sig.output_names} "
                              f"do not match the source's {input_names} -> {output_names}")
    return IRModel(model, sig, provenance)


def _sort_opset_imports(proto) -> None:
    """Opset imports in domain order: some converters (skl2onnx) list them in set order, which follows
    Python's hash seed, so the same model would give different artifact bytes from run to run."""
    pairs = sorted((o.domain, o.version) for o in proto.opset_import)
    if [(o.domain, o.version) for o in proto.opset_import] != pairs:
        from onnx import helper

        del proto.opset_import[:]
        proto.opset_import.extend(helper.make_opsetid(d, v) for d, v in pairs)
