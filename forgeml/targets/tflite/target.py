"""tflite: a .tflite for phones and microcontrollers, checked in the real TFLite interpreter.

Routes (the manifest's ``route`` says which ran; ``TFLiteConfig.route`` can force one):

- any source: the last fp32 IR (``ctx.float_ir``) → onnx2tf (hermetic, see ``tflite_onnx2tf``) → a
  tf_keras model → TensorFlow's TFLiteConverter;
- Keras sources (the converter handed over the Keras model): TensorFlow's converter straight from
  the Keras model (``tflite_keras``), no ONNX round trip, layouts unchanged.

Either way TensorFlow's converter does the quantization itself, from the float graph.
One run writes one variant, chosen by ``quantize.mode`` (or ``Config.variant``):

    `quantize.mode`     variant        file                         judged as
    (none)         fp32           model.tflite                 fp32
    fp16           fp16 weights   model_fp16.tflite            fp16
    int8 + `quantize.calibration` full-integer   model_int8.tflite            int8
    int8           dynamic-range  model_int8_dynamic.tflite    int8   (no `quantize.calibration`: says so in the manifest)
    int8-static    full-integer   model_int8.tflite            int8   (needs `quantize.calibration`)

One variant per run keeps the contract "one target, one artifact, one parity row per output": a
release that ships several variants runs forgeml once per variant (the conversion is seconds).

Names and layouts: the .tflite's ``serving_default`` signature uses the source model's input and
output names; the source↔TFLite map (which tensors onnx2tf made channel-last) is stored in the file's
metadata (``forgeml.io``, see ``tflite_io``), read back by the runner and by ``forgeml inspect``.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from forgeml.errors import TargetError
from forgeml.fileio import write_bytes_atomic
from forgeml.targets.base import Artifact, OpenContext, Opened, TargetContext, checked
from forgeml.targets.tflite.convert import PRECISION, VARIANTS
from forgeml.formats.tflite import IOMap

log = logging.getLogger(__name__)

_FILES = {"fp32": "model.tflite", "fp16": "model_fp16.tflite", "int8": "model_int8.tflite",
          "int8-dynamic": "model_int8_dynamic.tflite"}


@dataclass(frozen=True)
class TFLiteConfig:
    variant: str | None = None  # fp32 | fp16 | int8 | int8-dynamic; None: follow `quantize.mode`
    keep_layout: bool = False  # onnx2tf route: keep the source's channel-first inputs instead of NHWC
    int8_io: bool = False  # full-integer int8: int8 input/output tensors (accelerator style), not float
    float_fallback: bool = True  # full-integer int8: let ops without an int8 kernel stay float (listed)
    num_threads: int | None = None  # interpreter threads for the parity run (None: TFLite's default)
    route: str = "auto"  # auto | onnx2tf | keras: auto takes the Keras route for Keras sources


def variant_for(quantize: str | None, has_calibration: bool, config: TFLiteConfig) -> tuple[str, str]:
    """The variant to build and a sentence saying why (for the manifest)."""
    if config.variant is not None:
        if config.variant not in VARIANTS:
            raise TargetError(f"tflite: unknown variant {config.variant!r}; choose from {', '.join(VARIANTS)}")
        return config.variant, "chosen by the tflite target config"
    if quantize is None:
        return "fp32", "no `quantize.mode`"
    if quantize == "fp16":
        return "fp16", "`quantize.mode` fp16: float16 weights, float32 compute"
    if quantize == "int8":
        if has_calibration:
            return "int8", "`quantize.mode` int8 with `quantize.calibration`: full-integer, calibrated on the `quantize.calibration` data"
        return "int8-dynamic", ("`quantize.mode` int8 without `quantize.calibration`: dynamic-range (int8 weights, activations "
                                "quantized at run time); pass `quantize.calibration` for full-integer int8")
    if quantize == "int8-static":
        if not has_calibration:
            raise TargetError("tflite: `quantize.mode` int8-static needs calibration data: pass `quantize.calibration` data.npz")
        return "int8", "`quantize.mode` int8-static: full-integer, calibrated on the `quantize.calibration` data"
    raise TargetError(f"tflite: no TFLite variant for `quantize.mode` {quantize}; use fp16 or int8 "
                      "(or no `quantize.mode` for fp32)")


class TFLiteTarget:
    suffixes = (".tflite",)

    def inspect(self, path: Path) -> dict:
        """Signature, tensors, ops, and the source↔TFLite name/layout map forgeml stores in the file."""
        from forgeml.formats.tflite import describe

        return describe(path)

    def open(self, path: Path, ctx: OpenContext) -> Opened:
        """The TFLite interpreter; forgeml's io map (when present) gives source names and layouts."""
        from forgeml.ir import Signature, TensorSpec
        from forgeml.targets.tflite.runner import tflite_runner

        runner = tflite_runner(path)
        iomap = runner.iomap
        sig = None
        if iomap is not None and all(m.source_dtype for m in (*iomap.inputs, *iomap.outputs)):
            sig = Signature(tuple(TensorSpec(m.source, tuple(m.source_shape), m.source_dtype) for m in iomap.inputs),
                            tuple(TensorSpec(m.source, tuple(m.source_shape), m.source_dtype) for m in iomap.outputs))
        variant = iomap.info.get("variant") if iomap is not None else None
        return Opened(checked(runner, path), sig, "TFLite interpreter (ai-edge-litert)", PRECISION.get(variant) if variant else None)

    name = "tflite"
    Config = TFLiteConfig

    def build(self, ir, out_dir: Path, ctx: TargetContext) -> Artifact:
        from importlib.metadata import version

        from forgeml.targets.tflite import convert as tflite_convert

        from forgeml.targets.tflite import keras as tflite_keras

        from forgeml.targets.tflite import onnx2tf as tflite_onnx2tf
        from forgeml.targets.tflite.lowering import lower
        from forgeml.formats.tflite import embed

        config = ctx.config if isinstance(ctx.config, TFLiteConfig) else TFLiteConfig()
        variant, why = variant_for(ctx.quantize, bool(ctx.calibration), config)
        source = ctx.float_ir if ctx.float_ir is not None else ir
        if source.precision != "fp32":
            raise TargetError(f"tflite: needs the float graph, but the IR is {source.precision} and no fp32 stage "
                              "was kept; run without the quantization passes")
        # The first sample (the example inputs) proves the layout map; all feed onnx2tf's shape checks.
        samples = list(ctx.input_sets) or ([ctx.converted.example_inputs] if ctx.converted is not None else [])
        samples += list(ctx.calibration)
        if not samples:
            raise TargetError("tflite: no sample inputs to prove the layout map with")
        keras_model = self._keras_source(ctx, config)
        skipped = None
        if keras_model is not None:
            try:
                ins, outs = tflite_keras.maps(keras_model, source.signature)
            except TargetError as e:
                if config.route == "keras":
                    raise
                keras_model, skipped = None, str(e)  # auto: the onnx2tf route from the IR still applies
        built = None
        if keras_model is not None:
            keras3 = tflite_keras.is_keras3(keras_model)
            try:
                built = tflite_convert.convert(keras_model, ins, outs, variant, calibration=ctx.calibration,
                                               int8_io=config.int8_io, float_fallback=config.float_fallback,
                                               keras3=keras3)
            except TargetError as e:
                if config.route == "keras":
                    raise
                skipped = str(e)  # auto: TensorFlow's converter failed on the Keras model; try the IR
            route = (f"Keras source → TFLiteConverter.{'from_keras_model' if keras3 else 'from_concrete_functions'} "
                     f"({'keras ' + version('keras') if keras3 else 'tf-keras ' + version('tf-keras')}, "
                     f"tensorflow {version('tensorflow')})")
        rewrites: dict[str, int] = {}
        if built is None:
            with tempfile.TemporaryDirectory(prefix="forgeml-onnx2tf-") as scratch:
                layers = tflite_onnx2tf.node_layers(ctx.converted.ir.model) if ctx.converted is not None else {}
                lowering = lower(source.to_proto(), samples, Path(scratch), keep_layout=config.keep_layout,
                                 layers=layers)
                lowered = lowering.lowered
                built = tflite_convert.convert(lowered.model, lowered.inputs, lowered.outputs, variant,
                                               calibration=ctx.calibration, int8_io=config.int8_io,
                                               float_fallback=config.float_fallback)
            route = f"onnx2tf {lowered.version} → tf_keras → TFLiteConverter (tensorflow {version('tensorflow')})"
            if lowering.how:
                route = f"{lowering.how} → {route}"
            rewrites = lowering.rewrites
        info = {"variant": variant, "why": why, "route": route, "source": source.provenance.ref,
                "source_sha256": source.provenance.sha256, "producer": f"forgeml {ctx.forgeml_version}"}
        iomap = IOMap(tuple(built.inputs), tuple(built.outputs), info=info)
        data = embed(built.data, iomap, built.renames)
        path = out_dir / _FILES[variant]
        write_bytes_atomic(path, data)
        metadata = {"variant": variant, "why": why, "route": route,
                    "layout": {t.source: {"signature": t.key, "layout": t.layout,
                                          "tflite_shape": list(t.tflite_shape), "tflite_dtype": t.tflite_dtype}
                               for t in (*iomap.inputs, *iomap.outputs)},
                    **built.notes}
        if skipped:
            metadata["keras_route_skipped"] = skipped
        if rewrites:
            metadata["rewrites"] = rewrites
        if config != TFLiteConfig():
            metadata["config"] = asdict(config)
        return Artifact(self.name, path, [path], runtime=_litert_version(), metadata=metadata)

    @staticmethod
    def _keras_source(ctx: TargetContext, config: TFLiteConfig):
        """The source Keras model when the Keras route applies, else None (the onnx2tf route)."""
        from forgeml.targets.tflite import keras as tflite_keras

        model = ctx.converted.source_model if ctx.converted is not None else None
        if config.route not in ("auto", "onnx2tf", "keras"):
            raise TargetError(f"tflite: unknown route {config.route!r}; choose auto, onnx2tf or keras")
        if config.route == "onnx2tf":
            return None
        if not tflite_keras.is_keras(model):
            if config.route == "keras":
                raise TargetError("tflite: route 'keras' needs a Keras source model")
            return None
        return model

    def runner(self, artifact: Artifact, ctx: TargetContext):
        from forgeml.targets.tflite.runner import tflite_runner

        config = ctx.config if isinstance(ctx.config, TFLiteConfig) else TFLiteConfig()
        return checked(tflite_runner(artifact.path, num_threads=config.num_threads), artifact.path), \
            PRECISION[artifact.metadata["variant"]]


def _litert_version() -> str:
    from importlib.metadata import version

    return f"ai-edge-litert {version('ai-edge-litert')} interpreter"
