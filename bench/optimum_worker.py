"""Optimum's recipe for bench/bert.py, run inside the Optimum venv (bench/optimum-venv.sh), never in forgeml's.

    python optimum_worker.py MODEL_DIR OUT_DIR   → prints {"variant": "path/to/model.onnx", ...} as JSON

MODEL_DIR is a transformers checkpoint (config.json + weights) written by the bench; Optimum exports it
itself (its own exporter, its own graph), applies its O2 optimization preset and then dynamic int8
with its AVX2 and AVX-512 VNNI presets — the recipe its documentation gives for CPU inference. The
files are timed and compared by the bench, in its own process, interleaved with forgeml's variants.
"""

import json
import logging
import sys
from pathlib import Path


def main(model_dir: str, out_dir: str) -> None:
    logging.disable(logging.WARNING)
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    out = Path(out_dir)
    export = out / "export"
    main_export(model_dir, export, task="text-classification", do_validation=False, device="cpu")
    o2 = out / "o2"
    ORTOptimizer.from_pretrained(export).optimize(AutoOptimizationConfig.O2(), save_dir=o2)
    optimized = next(o2.glob("*optimized*.onnx"))
    # onnxruntime 1.32's quantizer cannot type the fused graph's tensors ("Unable to find data type for
    # weight_name=…") unless shapes are inferred first; symbolic inference keeps Optimum's recipe intact.
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    onnx.save(SymbolicShapeInference.infer_shapes(onnx.load(str(optimized)), auto_merge=True), str(optimized))
    files = {"export": str(export / "model.onnx"), "O2": str(optimized)}
    presets = {"avx2": AutoQuantizationConfig.avx2, "avx512_vnni": AutoQuantizationConfig.avx512_vnni}
    for name, preset in presets.items():
        save = out / f"o2-{name}"
        ORTQuantizer.from_pretrained(o2, file_name=optimized.name).quantize(
            preset(is_static=False, per_channel=False), save_dir=save)
        files[f"O2 + dynamic int8 ({name})"] = str(next(save.glob("*quantized*.onnx")))
    print(json.dumps(files))


if __name__ == "__main__":
    main(*sys.argv[1:3])
