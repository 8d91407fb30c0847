"""Keras sources → .tflite with TensorFlow's own converter, without the ONNX round trip.

A Keras model is already channel-last and TensorFlow's converter knows its layers, so nothing is
gained by going through ONNX and onnx2tf. The tflite target takes this route when the converter
handed over the original Keras model (``ConvertResult.source_model``) and its inputs and outputs
line up with the IR's signature; the manifest's ``route`` says which route ran.
"""

from __future__ import annotations

from forgeml.errors import TargetError
from forgeml.ir import Signature
from forgeml.formats.tflite import TensorMap


def is_keras(obj) -> bool:
    mod = type(obj).__module__
    return (mod.startswith("keras") or mod.startswith("tf_keras")) and hasattr(obj, "inputs") and \
        hasattr(obj, "outputs")


def is_keras3(obj) -> bool:
    """Keras 3 (``keras.src…``), as opposed to the Keras 2 of tf_keras."""
    return type(obj).__module__.startswith("keras")


def _dtype(d) -> str:
    return d if isinstance(d, str) else getattr(d, "name", str(d))


def _shape(t) -> tuple:
    return tuple(None if d is None else int(d) for d in t.shape)


def _fits(a, b) -> bool:
    return len(a) == len(b) and all(x is None or y is None or not isinstance(x, int) or not isinstance(y, int)
                                    or x == y for x, y in zip(a, b))


def maps(model, signature: Signature) -> tuple[list[TensorMap], list[TensorMap]]:
    """Source (IR) names ↔ the Keras model's inputs and outputs, by position; layouts unchanged."""
    ks_in, ks_out = list(model.inputs), list(model.outputs)
    if len(ks_in) != len(signature.inputs) or len(ks_out) != len(signature.outputs):
        raise TargetError(f"tflite: the Keras model has {len(ks_in)} inputs and {len(ks_out)} outputs, the IR "
                          f"{len(signature.inputs)} and {len(signature.outputs)}")

    def one(spec, k) -> TensorMap:
        if not _fits(spec.shape, _shape(k)):
            raise TargetError(f"tflite: Keras tensor {k.name!r} has shape {list(_shape(k))}, the IR's "
                              f"{spec.name!r} {list(spec.shape)}")
        return TensorMap(spec.name, spec.name, None, tuple(spec.shape), _shape(k), spec.dtype, _dtype(k.dtype))

    return ([one(s, k) for s, k in zip(signature.inputs, ks_in)],
            [one(s, k) for s, k in zip(signature.outputs, ks_out)])
