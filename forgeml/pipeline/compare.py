"""``forgeml parity A B``: any two models or artifacts, the same inputs, the same metrics and verdicts.

Each side becomes a ``Side`` (a runner, a signature, what it is). Artifact files are opened by the
``open`` of the target whose ``suffixes`` name them (``.onnx``, ``.tflite``, ``.gguf``, ``.safetensors``);
anything else is resolved as a conversion source (``zoo:NAME``, ``python:mod:fn``, a torch/Keras/…
file) and runs in its own framework through the converter's reference runner. A ``.safetensors``
file has no graph: it runs inside the model named by ``model``, with the file's weights loaded.
A is the reference; B is judged against A with the tolerance profile of B's precision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from forgeml.errors import InputError, first_line, require_file
from forgeml.ir import Signature, sha256_file
from forgeml.manifest import (DataHash, LatencyRecord, Manifest, ParityRecord, SignatureRecord, SourceRecord,
                              StageRecord)
from forgeml.runtime import InputSet, Runner


@dataclass
class Side:
    ref: str
    kind: str  # "onnx", "torch", "safetensors", …
    runner: Runner
    signature: Signature | None  # None: the file does not say; it takes the other side's names
    runtime: str
    sha256: str = ""
    precision: str | None = None  # what the artifact says it computes in, when it says
    example_inputs: InputSet | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class LoadContext:
    model: str | None = None  # `model`: the architecture a weights-only file runs in
    converted: dict = field(default_factory=dict)  # source spec → ConvertResult, converted once


def load_source(src: str, ctx: LoadContext) -> Side:
    """A conversion source, run in its own framework (the converter's reference runner)."""
    from forgeml.converters import ImportOptions
    from forgeml.pipeline.sources import resolve

    if src not in ctx.converted:
        resolved = resolve(src)
        # A converter that can run its source without exporting it says so (the export proves nothing here).
        quick = getattr(resolved.converter, "reference_only", None)
        if quick is not None:
            ctx.converted[src] = quick(resolved.model, resolved.example_inputs, resolved.ref)
        else:
            opts = ImportOptions(output_names=resolved.output_names)
            ctx.converted[src] = resolved.converter.convert(resolved.model, resolved.example_inputs, resolved.ref,
                                                            opts)
    c = ctx.converted[src]
    return Side(src, c.ir.provenance.kind, c.reference, c.ir.signature, c.reference_name, c.ir.provenance.sha256,
                None, c.example_inputs)


def _as_decoder(a: Side, b: Side, ctx: LoadContext) -> Side:
    """A source whose quick reference is the logits forward, against a KV-cache decoder file: A again,
    as the decoder with its cache (the converter's ``reference_only(kv_cache=True)``)."""
    from forgeml.pipeline.sources import resolve

    past = "past_key_values.0.key"
    if a.ref not in ctx.converted or past in a.signature.input_names or past not in b.signature.input_names:
        return a
    import inspect

    resolved = resolve(a.ref)
    quick = getattr(resolved.converter, "reference_only", None)
    if quick is None or "kv_cache" not in inspect.signature(quick).parameters:  # a converter without decoders
        return a
    c = quick(resolved.model, resolved.example_inputs, resolved.ref, kv_cache=True)
    ctx.converted[a.ref] = c
    return Side(a.ref, c.ir.provenance.kind, c.reference, c.ir.signature, c.reference_name, c.ir.provenance.sha256,
                None, c.example_inputs)


def opener(path: Path):
    """The target that opens files of this suffix on their own, or None. A target sharing its suffix
    with a source format (torch-aoti's ``.pt2``) says by ``opens(path)`` whether the file is its own."""
    from forgeml.targets import TARGETS

    return next((t for t in TARGETS.values() if hasattr(t, "open") and path.suffix.lower() in t.suffixes
                 and getattr(t, "opens", lambda p: True)(path)), None)


def load_side(spec: str, ctx: LoadContext) -> Side:
    """An artifact file through its target's ``open``; anything else as a conversion source."""
    from forgeml.targets.base import OpenContext

    path = Path(spec)
    target = None if spec.startswith(("zoo:", "python:")) else opener(path)
    if target is None:
        return load_source(spec, ctx)
    require_file(path)  # a FIFO, device, directory or empty file: one line, never a blocking open

    def source():
        load_source(ctx.model, ctx)
        return ctx.converted[ctx.model]

    opened = target.open(path, OpenContext(ctx.model, source if ctx.model else None))
    return Side(str(path), target.name, opened.runner, opened.signature, opened.runtime, sha256_file(path),
                opened.precision, opened.example_inputs)


# --- matching two signatures ----------------------------------------------------------------------

@dataclass
class Renamed:
    """``runner`` speaking other names: inputs renamed by ``in_map`` on the way in, outputs by ``out_map``."""

    runner: Runner
    in_map: dict[str, str]
    out_map: dict[str, str]

    def __call__(self, inputs: InputSet) -> dict[str, np.ndarray]:
        got = self.runner({self.in_map.get(k, k): v for k, v in inputs.items()})
        return {self.out_map.get(k, k): v for k, v in got.items()}


def align(a: Side, b: Side) -> tuple[Runner, list[str]]:
    """B's runner speaking A's input/output names: by name, else by position when the counts agree."""
    notes: list[str] = []

    def match(kind: str, verb: str, a_names: list[str], b_names: list[str]) -> dict[str, str]:
        """{A name: B name} when the names differ but the counts agree; {} when the names agree."""
        if set(a_names) == set(b_names):
            return {}
        if len(a_names) != len(b_names):
            raise InputError(f"the two models do not share a signature: A {verb} {a_names}, B {verb} {b_names}")
        mapping = dict(zip(a_names, b_names))
        notes.append(f"{kind} matched by position: {mapping}")
        return mapping

    in_map = match("inputs", "takes", a.signature.input_names, b.signature.input_names)
    out_map = {b_name: a_name for a_name, b_name in
               match("outputs", "returns", a.signature.output_names, b.signature.output_names).items()}
    return (Renamed(b.runner, in_map, out_map) if in_map or out_map else b.runner), notes


def synth_example(sig: Signature, seed: int = 0) -> InputSet:
    """An example batch from a signature alone, for when neither side carries one.

    Symbolic dims: 2 on the first axis (batch), 8 elsewhere (tokens, …); integers are ids in [0, 8) so
    any embedding table takes them (``example_from_spec``'s rule). Real data (``parity.inputs``) is better.
    """
    from forgeml.parity.inputs import example_from_spec

    rng = np.random.default_rng(seed)
    return {t.name: example_from_spec(t, rng, 8, dims={0: 2}, int_high=8) for t in sig.inputs}


def compare(a_spec: str, b_spec: str, *, inputs: Sequence[InputSet] = (), model: str | None = None,
            profile: str | None = None, batches: int = 3, seed: int = 0, atol: float | None = None,
            rtol: float | None = None, command: str = "") -> Manifest:
    """Run both on the same inputs and judge B against A; returns a ``Manifest`` (``kind="parity"``) for
    the reports."""
    from forgeml.pipeline.run import ToleranceOverrides, tool_versions
    from forgeml.parity.inputs import check_inputs, parity_inputs
    from forgeml.runtime.latency import measure_latency
    from forgeml.parity.measure import measure, run_reference
    from forgeml.parity.tolerances import PROFILES, profile_for

    ctx = LoadContext(model=model)
    a = load_side(a_spec, ctx)
    b = load_side(b_spec, ctx)
    if a.signature is None and b.signature is None:
        raise InputError(f"neither {a_spec} nor {b_spec} says what its inputs are; compare one of them with a "
                         "model that does (an .onnx, or the source model)")
    a.signature = a.signature or b.signature
    b.signature = b.signature or a.signature
    a = _as_decoder(a, b, ctx)
    b_run, notes = align(a, b)
    for s in inputs:
        check_inputs(s, a.signature, "`parity.inputs`")
    example = a.example_inputs or (b.example_inputs if not notes else None) or synth_example(a.signature, seed)
    sets = list(inputs) if inputs else parity_inputs(example, a.signature, batches=batches, seed=seed,
                                                       dynamic_batch=False)
    precision = profile or b.precision or "fp32"
    if precision not in PROFILES:
        raise InputError(f"--profile {precision!r}: known profiles are {', '.join(PROFILES)}")
    tol = ToleranceOverrides(atol=atol, rtol=rtol).apply(profile_for(precision))
    ref_outputs = run_reference(a.runner, sets, f"A ({a_spec})")
    t0 = time.perf_counter()
    try:
        parity = measure(ref_outputs, b_run, sets, tol, reference=f"{a.ref} ({a.runtime})",
                         output_names=a.signature.output_names)
    except InputError:
        raise
    except Exception as e:  # B cannot take A's inputs: a mismatch of models, not a parity verdict
        raise InputError(f"B ({b_spec}) failed on the inputs: {first_line(e, with_type=True)}") from e
    decoder = getattr(ctx.converted.get(a_spec), "decoder", None)
    if decoder is not None:  # a KV-cache decoder on both sides: greedy tokens too
        from forgeml.parity.generation import GenerationCheck

        parity = GenerationCheck.start(decoder, 32).judge(parity, b_run, tol)
    seconds = round(time.perf_counter() - t0, 3)
    stage = StageRecord(f"{Path(b.ref).name if b.kind != 'torch' else b.ref} vs {Path(a.ref).name}", "compare",
                        candidate=b.ref, runtime=b.runtime, seconds=seconds,
                        parity=ParityRecord.from_json(parity.to_json()),
                        latency=LatencyRecord.from_json(measure_latency(b_run, sets[0])),
                        reference_latency=LatencyRecord.from_json(measure_latency(a.runner, sets[0])), notes=notes)
    manifest = Manifest(forgeml_version=_version(), kind="parity", ok=parity.passed,
                        source=SourceRecord(a.kind, a.ref, a.sha256, a.runtime),
                        candidate=SourceRecord(b.kind, b.ref, b.sha256, b.runtime),
                        signature=SignatureRecord.from_json(a.signature.to_json()), stages=[stage],
                        tools=tool_versions(), command=command or None)
    if inputs:
        from forgeml.pipeline.provenance import data_hash

        manifest.user_inputs = DataHash.from_json(data_hash(inputs))
    return manifest


def _version() -> str:
    from forgeml.version import __version__

    return __version__


