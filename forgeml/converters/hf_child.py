"""A checkpoint's reference outputs computed in a child process, while the parent writes the artifact.

Why: an artifact written from the checkpoint (GGUF) needs the source framework only for its reference
logits. Computed here, in a process of its own, torch and transformers never enter the converting
process (they stay ~450 MiB resident after the model is dropped), the child's memory is the OS's
again before llama.cpp maps the written file, and the reference's forward overlaps the write (it
needs the checkpoint only, not the file). The child loads the streamed model (``hf_stream``: float32
arithmetic, each module's weights read from the safetensors around its forward), makes the parity
input sets exactly as the pipeline does (``parity_inputs``) and writes them with the outputs as
.npz beside a small JSON; a ``ForgeError`` in the child comes back as the same class and message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forgeml.errors import ConversionError, ForgeError
from forgeml.runtime import InputSet


@dataclass
class ChildReference:
    """What the child computed: the parity input sets (example first) and the reference's outputs."""

    input_sets: list[InputSet]
    outputs: list[dict[str, np.ndarray]]
    reference_name: str
    seconds: float
    peak_rss_mib: float


class ReferenceJob:
    """A running child; ``result()`` waits for it, ``cancel()`` ends it (both idempotent)."""

    def __init__(self, proc: subprocess.Popen, work: tempfile.TemporaryDirectory, started: float):
        self.proc, self.work, self.started = proc, work, started

    def result(self) -> ChildReference:
        try:
            _, err = self.proc.communicate()
            work = Path(self.work.name)
            meta_path = work / "result.json"
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
            if "error" in meta:
                import forgeml.errors as errors

                cls = getattr(errors, meta.get("class", ""), ConversionError)
                raise (cls if isinstance(cls, type) and issubclass(cls, ForgeError) else ConversionError)(meta["error"])
            if self.proc.returncode != 0 or "sets" not in meta:
                tail = (err or b"").decode(errors="replace").strip().splitlines()[-1:]
                raise ConversionError(f"the reference process ended with code {self.proc.returncode}"
                                      + (f": {tail[0]}" if tail else ""))
            with np.load(work / "arrays.npz", allow_pickle=False) as z:
                sets = [{k: z[f"in{i}/{k}"] for k in names} for i, names in enumerate(meta["sets"])]
                outs = [{k: z[f"out{i}/{k}"] for k in names} for i, names in enumerate(meta["outputs"])]
            return ChildReference(sets, outs, meta["reference_name"], time.perf_counter() - self.started,
                                  meta.get("peak_rss_mib", 0.0))
        finally:
            self.work.cleanup()

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.work.cleanup()


def start_reference(checkpoint: Path, *, batches: int = 0, seed: int = 0, dynamic_batch: bool = False,
                    user_inputs: tuple[InputSet, ...] = (), only: bool = False,
                    rounding: dict[str, tuple[str, bool]] | None = None) -> ReferenceJob:
    """Start the child for ``checkpoint``'s parity sets (the example, ``batches`` seeded batches, the
    user's own sets) and their reference outputs; returns at once. ``only``: the user's sets alone (the
    example and seeded batches are not made). ``rounding``: {source tensor: (GGML type, transposed)}:
    each weight is first rounded as a file of those types stores it (quantized and dequantized by
    gguf-py; ``transposed``: in the file's transposed layout), which gives the noise the weight type
    alone causes in the source framework (``forgeml.parity.floor``)."""
    work = tempfile.TemporaryDirectory(prefix="forgeml-reference-")
    spec = {"checkpoint": str(checkpoint), "batches": batches, "seed": seed, "dynamic_batch": dynamic_batch,
            "user_inputs": [sorted(s) for s in user_inputs], "only": only, "rounding": rounding}
    if user_inputs:
        np.savez(Path(work.name) / "user.npz", **{f"{i}/{k}": v for i, s in enumerate(user_inputs)
                                                 for k, v in s.items()})
    (Path(work.name) / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.Popen([sys.executable, "-m", "forgeml.converters.hf_child", work.name],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return ReferenceJob(proc, work, time.perf_counter())


def _child(work: Path) -> None:
    import resource

    from forgeml.converters.hf import HFConverter
    from forgeml.parity.inputs import parity_inputs
    from forgeml.parity.measure import run_reference

    spec = json.loads((work / "spec.json").read_text())
    user: list[InputSet] = []
    if spec["user_inputs"]:
        with np.load(work / "user.npz", allow_pickle=False) as z:
            user = [{k: z[f"{i}/{k}"] for k in names} for i, names in enumerate(spec["user_inputs"])]
    ckpt = Path(spec["checkpoint"])
    rounding = spec.get("rounding")
    converted = HFConverter().reference_only(ckpt, None, str(ckpt), dtype="streamed", digest=False,  # the parent's
                                             weight_fn=_rounder(rounding) if rounding else None)
    if spec.get("only"):
        sets = user
    else:
        sets = parity_inputs(converted.example_inputs, converted.ir.signature, batches=spec["batches"],
                             seed=spec["seed"], dynamic_batch=spec["dynamic_batch"], user=user)
    outs = run_reference(converted.reference, sets, "the source model")
    arrays = {f"in{i}/{k}": v for i, s in enumerate(sets) for k, v in s.items()}
    arrays.update({f"out{i}/{k}": np.asarray(v) for i, o in enumerate(outs) for k, v in o.items()})
    np.savez(work / "arrays.npz", **arrays)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (work / "result.json").write_text(json.dumps({"sets": [list(s) for s in sets], "outputs": [list(o) for o in outs],
                                                  "reference_name": converted.reference_name,
                                                  "peak_rss_mib": round(rss, 1)}))


def _rounder(rounding: dict):
    """weight_fn for ``streamed_model``: each tensor as the file's type stores it, back in float32."""
    import gguf

    def fn(name: str, a: np.ndarray) -> np.ndarray:
        qname, transposed = rounding.get(name, ("F32", False))
        qtype = gguf.GGMLQuantizationType[qname]
        if qtype == gguf.GGMLQuantizationType.F32 or a.ndim == 0:
            return a
        b = np.ascontiguousarray(a.T if transposed else a, dtype=np.float32)
        r = gguf.quants.dequantize(gguf.quants.quantize(b, qtype), qtype).reshape(b.shape).astype(np.float32)
        return np.ascontiguousarray(r.T) if transposed else r

    return fn


if __name__ == "__main__":
    _work = Path(sys.argv[1])
    try:
        _child(_work)
    except ForgeError as _e:
        (_work / "result.json").write_text(json.dumps({"error": str(_e), "class": type(_e).__name__}))
        os._exit(2)
