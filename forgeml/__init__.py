"""forgeml: convert a trained model into the artifacts runtimes load, and prove every step.

    import forgeml
    result = forgeml.convert(model, example_inputs, targets=["onnx", "safetensors"], out_dir="export/")
    result.ok, result.artifacts["onnx"].path, print(result.parity.table())

Heavy frameworks are imported only when a conversion needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from forgeml.errors import (  # noqa: F401  (public API)
    ConversionError,
    ForgeError,
    InputError,
    ParityError,
    PassError,
    TargetError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from forgeml.pipeline import Conversion


def convert(
    model,
    example_inputs=None,
    *,
    targets: Sequence[str] = ("onnx",),
    passes: Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    force: bool = False,
    dynamic_batch: bool = False,
    inputs: Iterable[dict] = (),
    output_names: Sequence[str] = (),
    opset: int | None = None,
    parity_batches: int = 3,
    atol: float | None = None,
    rtol: float | None = None,
    trust_pickle: bool = False,
    quantize: str | None = None,
    calibration: Iterable[dict] | None = None,
    calib_synthetic: bool = False,
    max_cosine_drop: float | None = None,
    min_top1: float | None = None,
    signature: str | None = None,
    command: str = "",
    on_event=None,
    target_configs: dict | None = None,
    localize: str = "auto",
) -> Conversion:
    """Convert ``model`` (an in-memory model, a file path, ``"zoo:NAME"`` or ``"python:mod:fn"``).

    ``example_inputs``: a tensor/array, a tuple of them, or a dict by input name. ``inputs``: extra
    input dicts to check parity on. ``quantize``: "fp16" | "int8" | "int8-static" | "int4" (passes
    appended after the default ones); ``calibration``: input dicts (first axis = samples) for
    int8-static; ``max_cosine_drop``/``min_top1``: the quantized stage's accuracy budget.
    ``target_configs``: target name -> that target's Config instance
    (e.g. ``{"tensorrt": TensorRTConfig(...)}``). Returns a ``Conversion``: ``.ok`` is False when any stage misses
    its tolerance (the artifacts and manifest are still written, so the failure can be read).
    Raises ``InputError``/``ConversionError``/``PassError`` when there is nothing to write.
    ``localize``: find the first diverging node of a failing stage: "auto" (graphs of moderate size),
    "always", or "never".
    """
    import tempfile

    from forgeml.converters import ImportOptions
    from forgeml.pipeline import build_config, run
    from forgeml.sources import resolve

    resolved = resolve(model, example_inputs)
    config = build_config(
        targets=targets, passes=passes, quantize=quantize, calibration=tuple(calibration or ()),
        calib_synthetic=calib_synthetic, max_cosine_drop=max_cosine_drop, min_top1=min_top1,
        atol=atol, rtol=rtol,
        import_options=ImportOptions(dynamic_batch=dynamic_batch, output_names=tuple(output_names),
                                     opset=opset, trust_pickle=trust_pickle, signature=signature),
        parity_batches=parity_batches, user_inputs=tuple(inputs), target_configs=target_configs,
        command=command or f"forgeml.convert({resolved.ref!r}, targets={list(targets)})", localize=localize,
    )
    if out_dir is None:
        out_dir = Path(tempfile.mkdtemp(prefix="forgeml-"))
    return run(resolved, config, Path(out_dir), force=force, on_event=on_event or (lambda e: None))


def inspect(path: str | Path) -> dict:
    """Signature, ops, sizes and metadata of an artifact (.onnx, .safetensors, .tflite, .gguf)."""
    from forgeml.inspection import inspect_file

    return inspect_file(Path(path))


def scan(path: str | Path):
    """The globals a pickle-based file would import, read from its opcodes without loading it.

    Returns a ``ScanReport``: ``.clean`` is True when every global is on the allow-list;
    ``.flagged`` lists the others with their opcode offsets.
    """
    from forgeml.validation.pickle_scan import scan_file

    return scan_file(path)
