"""The library's face: ``convert``, ``parity``, ``reproduce``, ``inspect`` and ``scan``, each taking
plain values and typed option objects (``ImportOptions``, ``QuantizeOptions``, ``ParityOptions``, a
target's own ``Config``). Everything heavy is imported inside the functions, so ``import forgeml``
stays instant. Errors name these parameters and fields (`quantize.calibration`), never CLI flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from forgeml.converters.base import ImportOptions
from forgeml.options import MlflowOptions, ParityOptions, QuantizeOptions

if TYPE_CHECKING:
    from forgeml.pipeline.run import Conversion, StageEvent
    from forgeml.security.pickle_scan import ScanReport


def convert(
    model,
    example_inputs=None,
    *,
    targets: Sequence[str] = ("onnx",),
    out_dir: str | Path | None = None,
    passes: Sequence[str] | None = None,
    quantize: str | QuantizeOptions | None = None,
    parity: ParityOptions | None = None,
    options: ImportOptions | None = None,
    target_configs: Mapping[str, object] | None = None,
    force: bool = False,
    on_event: Callable[[StageEvent], None] | None = None,
    mlflow: str | MlflowOptions | None = None,
) -> Conversion:
    """Convert ``model`` (an in-memory model, a file path, ``"zoo:NAME"`` or ``"python:mod:fn"``) to
    ``targets`` in ``out_dir`` (a new temporary directory when None), checking parity after every stage.

    ``example_inputs``: a tensor/array, a tuple of them, or a dict by input name. ``passes``: pass names
    in order (None: check, simplify, cleanup). ``quantize``: a mode name ("fp16" | "int8" |
    "int8-static" | "int4") or a ``QuantizeOptions`` with calibration data and a budget. ``parity``:
    batches, extra inputs, tolerance overrides, localization. ``options``: how to import (dynamic batch,
    output names, opset, ``trust_pickle``, SavedModel signature). ``target_configs``: target name ->
    that target's ``Config`` (e.g. ``{"tensorrt": TensorRTConfig(...)}``). ``force``: replace an
    existing non-empty ``out_dir``. ``mlflow``: log the finished package to MLflow — a tracking URI, or
    an ``MlflowOptions`` (URI, experiment, ``register`` a model version and set its ``alias``); the
    active run is used when there is one. ``.published`` on the result says where it went.

    Returns a ``Conversion``: ``.ok`` is False when any stage misses its tolerance (the artifacts and
    manifest are still written, so the failure can be read). Raises ``InputError``/``ConversionError``/
    ``PassError`` when there is nothing to write; ``PublishError`` when the package was written but
    could not be logged to MLflow (``publish_mlflow`` logs it again).
    """
    import tempfile

    from forgeml.pipeline.config import build_config
    from forgeml.pipeline.run import run
    from forgeml.pipeline.sources import resolve

    if isinstance(quantize, str):
        quantize = QuantizeOptions(quantize)
    if isinstance(mlflow, str):
        mlflow = MlflowOptions(tracking_uri=mlflow)
    if mlflow is not None:  # before the source is even read: a wrong option fails at once
        from forgeml.publish.mlflow import check_options

        check_options(mlflow, tuple(targets))
    resolved = resolve(model, example_inputs)
    config = build_config(
        targets=targets, passes=passes, quantize=quantize, parity=parity or ParityOptions(),
        import_options=options or ImportOptions(), target_configs=target_configs,
        command=f"forgeml.convert({resolved.ref!r}, targets={list(targets)})", mlflow=mlflow,
    )
    if out_dir is None:
        out_dir = Path(tempfile.mkdtemp(prefix="forgeml-"))
    return run(resolved, config, Path(out_dir), force=force, on_event=on_event or (lambda e: None))


def publish_mlflow(out_dir: str | Path, mlflow: str | MlflowOptions | None = None):
    """Log a finished output directory (what ``convert`` wrote) to MLflow, as ``convert(..., mlflow=…)``
    does at the end of a run: for a package converted earlier, or one whose logging failed. Returns a
    ``Published`` (tracking URI, run id, each target's model URI, the registered version)."""
    from forgeml.publish.mlflow import publish as _publish

    options = MlflowOptions(tracking_uri=mlflow) if isinstance(mlflow, str) else mlflow or MlflowOptions()
    return _publish(Path(out_dir), options)


def parity(a: str, b: str, *, inputs: Sequence[dict] = (), model: str | None = None, profile: str | None = None,
           batches: int = 3, atol: float | None = None, rtol: float | None = None) -> dict:
    """Run two models or artifacts (any source spec, or an artifact file: .onnx, .tflite, .gguf, or a
    .safetensors with ``model`` naming the model its weights belong to) on the same inputs and judge
    ``b`` against ``a``; returns the comparison as a manifest-shaped dict (``ok``, ``stages``;
    ``forgeml.manifest.Manifest.from_json`` reads it typed)."""
    from forgeml.pipeline.compare import compare

    return compare(a, b, inputs=tuple(inputs), model=model, profile=profile, batches=batches, atol=atol, rtol=rtol,
                   command=f"forgeml.parity({a!r}, {b!r})").to_json()


def reproduce(manifest: str | Path, out_dir: str | Path | None = None, *, force: bool = False) -> dict:
    """Repeat the run a manifest records (its command line, or its recorded API configuration) and say
    whether each artifact came out byte-identical or equivalent within its parity profile."""
    from forgeml.pipeline.reproduce import reproduce as _reproduce

    return _reproduce(Path(manifest), None if out_dir is None else Path(out_dir), force=force)


def inspect(path: str | Path) -> dict:
    """Signature, ops, sizes and metadata of an artifact (.onnx, .safetensors, .tflite, .gguf)."""
    from forgeml.pipeline.inspection import inspect_file

    return inspect_file(Path(path))


def scan(path: str | Path) -> ScanReport:
    """The globals a pickle-based file would import, read from its opcodes without loading it.

    Returns a ``ScanReport``: ``.clean`` is True when every global is on the allow-list;
    ``.flagged`` lists the others with their opcode offsets.
    """
    from forgeml.security.pickle_scan import scan_file

    return scan_file(path)
