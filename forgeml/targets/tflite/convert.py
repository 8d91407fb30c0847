"""A TensorFlow model → .tflite bytes in one variant, with a serving signature keyed by source names.

Variants (TensorFlow's own TFLiteConverter does the quantization, from the float graph):

- ``fp32``: builtin ops only (the stock interpreter has no Flex delegate, so no Select TF ops);
- ``fp16``: float16 weights, float32 compute and I/O;
- ``int8``: full-integer — weights *and* activations int8, scales calibrated on the run's
  ``quantize.calibration`` batches. Ops without an int8 kernel stay float only when ``float_fallback`` allows it,
  and the result lists them. I/O stays float32 unless ``int8_io`` (then the runner quantizes);
- ``int8-dynamic``: dynamic-range — int8 weights, activations quantized on the fly at run time; the
  route when there is no calibration data.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from forgeml.runtime.quiet import quiet
from forgeml.runtime.quiet import native_quiet
from forgeml.errors import TargetError
from forgeml.formats.tflite import TensorMap
from forgeml.runtime import InputSet

log = logging.getLogger(__name__)

VARIANTS = ("fp32", "fp16", "int8", "int8-dynamic")
PRECISION = {"fp32": "fp32", "fp16": "fp16", "int8": "int8", "int8-dynamic": "int8"}
_KEY = re.compile(r"[^A-Za-z0-9_.\-]")


@dataclass
class Built:
    data: bytes
    inputs: list[TensorMap]  # with their final signature keys and TFLite dtypes
    outputs: list[TensorMap]
    notes: dict = field(default_factory=dict)
    renames: dict = field(default_factory=dict)  # signature entry → its key, for ``tflite_io.embed``


def signature_keys(names: Sequence[str]) -> list[str]:
    """Source names as TensorFlow accepts them for signature entries: unchanged when valid."""
    keys, seen = [], set()
    for n in names:
        k = _KEY.sub("_", n) or "t"
        if not k[0].isalnum():
            k = "t" + k
        base, i = k, 1
        while k in seen:
            i += 1
            k = f"{base}_{i}"
        seen.add(k)
        keys.append(k)
    return keys


def convert(model, ins: Sequence[TensorMap], outs: Sequence[TensorMap], variant: str, *,
            calibration: Sequence[InputSet] = (), int8_io: bool = False, float_fallback: bool = True,
            keras3: bool = False) -> Built:
    """``model`` is a TensorFlow model taking a list of inputs in ``ins`` order: a tf_keras model
    (onnx2tf's), traced into a serving function whose signature carries the source names, or with
    ``keras3`` a Keras 3 model, given to ``from_keras_model`` (a traced Keras 3 model converts to a
    .tflite that computes NaN) and its signature entries renamed afterwards."""
    if variant not in VARIANTS:
        raise TargetError(f"tflite: unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    import tensorflow as tf

    ins = [replace(m, key=k) for m, k in zip(ins, signature_keys([m.source for m in ins]))]
    outs = [replace(m, key=k) for m, k in zip(outs, signature_keys([m.source for m in outs]))]
    renames: dict[str, str] = {}
    if keras3:
        # from_keras_model names inputs after the Keras input layers and outputs output_0, output_1, …
        renames = {t.name: m.key for t, m in zip(model.inputs, ins)}
        renames.update({f"output_{i}": m.key for i, m in enumerate(outs)})

        def converter():
            c = tf.lite.TFLiteConverter.from_keras_model(model)
            c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            return c
    else:
        specs = [tf.TensorSpec(k.shape, k.dtype, name=m.key) for m, k in zip(ins, model.inputs)]

        @tf.function(input_signature=specs, autograph=False)
        def serve(*args):
            y = model(list(args), training=False)
            y = y if isinstance(y, (list, tuple)) else [y]
            return {m.key: t for m, t in zip(outs, y)}

        with quiet("tensorflow", "absl"), native_quiet():
            fn = serve.get_concrete_function()
        root = _tracking_root(tf, model, fn)

        def converter():
            c = tf.lite.TFLiteConverter.from_concrete_functions([fn], root)
            c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            return c

    notes: dict = {}

    c = converter()
    if variant == "fp16":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.target_spec.supported_types = [tf.float16]
    elif variant == "int8-dynamic":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        if not calibration:
            raise TargetError("tflite: the full-integer int8 variant needs calibration data: pass `quantize.calibration` data.npz "
                              "(or use `quantize.mode` int8 without `quantize.calibration` for dynamic-range int8)")
        c = _full_integer(c, ins, model, calibration, int8_io)
        notes["calibration_samples"] = sum(len(next(iter(s.values()))) for s in calibration)
    try:
        data = _run(c, variant)
    except TargetError:
        if variant != "int8" or not float_fallback:
            raise
        # Some ops have no int8 kernel: let TFLite keep those in float, and say which.
        c = _full_integer(converter(), ins, model, calibration, int8_io)
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        data = _run(c, variant)
        notes["float_fallback"] = True
    _require_signature(data, variant)
    if variant == "int8":
        notes["float_ops"] = float_ops(data)
    if int8_io and variant == "int8":
        ins = [replace(m, tflite_dtype="int8") if m.tflite_dtype.startswith("float") else m for m in ins]
        outs = [replace(m, tflite_dtype="int8") if m.tflite_dtype.startswith("float") else m for m in outs]
    return Built(bytes(data), ins, outs, notes, renames)


def _tracking_root(tf, model, fn):
    """The object TensorFlow's converter saves with the serving function: the model plus every variable
    the function captures. onnx2tf lowers grouped Conv (and depthwise ones it does not map to
    ``tf.nn.depthwise_conv2d``, ConvNeXt's) with ``Conv2D(groups=…)`` kernels its Keras model does
    not track; the converter's SavedModel export then fails *silently* and it falls back to a frozen
    graph with no signature at all, so the .tflite has no ``serving_default``. Tracking the captured
    variables here keeps the SavedModel route."""
    root = tf.Module()
    root.model = model
    root.captured = list(fn.graph.variables)
    return root


def _require_signature(data: bytes, variant: str) -> None:
    """One line now, rather than "no signature" from the runner later: every route here must give
    the ``serving_default`` signature the io map and the runner are keyed by."""
    from ai_edge_litert import schema_py_generated as fb

    from forgeml.formats.tflite import SIGNATURE_KEY

    m = fb.Model.GetRootAs(data, 0)
    keys = [m.SignatureDefs(i).SignatureKey() for i in range(m.SignatureDefsLength())]
    keys = [k.decode() if isinstance(k, bytes) else k for k in keys]
    if SIGNATURE_KEY not in keys:
        raise TargetError(f"tflite: TensorFlow's converter wrote the {variant} variant without a "
                          f"{SIGNATURE_KEY!r} signature (it has {keys}): it could not export the model as a "
                          "SavedModel (TensorFlow does not say why) and fell back to a frozen graph")


def _full_integer(c, ins: Sequence[TensorMap], model, calibration: Sequence[InputSet], int8_io: bool):
    import tensorflow as tf

    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.representative_dataset = lambda: representative(ins, model, calibration)
    if int8_io:
        c.inference_input_type = tf.int8
        c.inference_output_type = tf.int8
    return c


def representative(ins: Sequence[TensorMap], model, calibration: Sequence[InputSet]):
    """Calibration batches in the TFLite layout, regrouped to the model's batch size when it is fixed."""
    arrays = [np.concatenate([m.to_tflite(s[m.source]) for s in calibration]).astype(m.tflite_dtype)
              for m in ins]
    batch = model.inputs[0].shape[0]
    batch = int(batch) if batch is not None else 1
    n = len(arrays[0])
    for start in range(0, n, batch):
        idx = np.arange(start, start + batch) % n  # wrap to fill the last batch
        yield [a[idx] for a in arrays]


def _run(c, variant: str) -> bytes:
    try:
        with quiet("tensorflow", "absl"), native_quiet():
            return c.convert()
    except Exception as e:  # ConverterError and friends carry the MLIR diagnostics in their text
        text = str(e)
        ops = sorted(set(re.findall(r"'(tf\.[A-Za-z0-9_]+)' op", text)))
        if ops:
            why = f"no TFLite builtin{' int8' if variant == 'int8' else ''} kernel for {', '.join(ops)}"
        else:
            lines = [ln.strip() for ln in text.splitlines() if "error" in ln.lower()] or [text.strip()]
            why = lines[0][:300]
        raise TargetError(f"tflite: TensorFlow's TFLite converter failed on the {variant} variant: {why}") from e


def float_ops(data: bytes) -> dict[str, int]:
    """Ops of a quantized model that still compute in float (besides the edge Quantize/Dequantize)."""
    from ai_edge_litert import schema_py_generated as fb

    m = fb.Model.GetRootAs(data, 0)
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    sub = m.Subgraphs(0)
    out: Counter = Counter()
    for j in range(sub.OperatorsLength()):
        op = sub.Operators(j)
        oc = m.OperatorCodes(op.OpcodeIndex())
        name = names.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()), "?")
        if name in ("QUANTIZE", "DEQUANTIZE"):
            continue
        if any(sub.Tensors(op.Outputs(k)).Type() == fb.TensorType.FLOAT32 for k in range(op.OutputsLength())):
            out[name] += 1
    return dict(sorted(out.items()))
