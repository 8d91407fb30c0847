"""torch-aoti: the torch source compiled ahead of time by AOTInductor into a ``.pt2`` package.

A compiled artifact that can be verified on any machine: ``torch.export`` captures the source module,
``torch._inductor.aoti_compile_and_package`` compiles it for CUDA when a GPU is visible and for the CPU
otherwise, and parity loads the package with ``aoti_load_package``.

Parity runs the package in a *fresh* Python process: loading a package in the process that compiled it
crashed (rc 139) on an H100 with torch 2.11, and a fresh process is also what a user's server is. The
parity inputs go over in one ``.npz`` and all outputs come back in one, so the process (and torch's
import) is paid once per run, not once per batch.

It compiles the *source* model (not the ONNX IR), so it needs a torch source: ``ConvertResult.source_model``
is an ``nn.Module`` or an ``ExportedProgram``. It is an fp32 artifact: ``quantize.mode`` does not apply to it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from forgeml.errors import TargetError, first_line
from forgeml.runtime.heartbeat import heartbeat
from forgeml.targets.base import Artifact, OpenContext, Opened, TargetContext, checked

_WORKER = "forgeml.targets.torch_aoti.worker"
_LOAD_TIMEOUT_S = 600


class TorchAOTITarget:
    suffixes = (".pt2",)
    name = "torch-aoti"
    Config = None
    filename = "model.pt2"

    def build(self, ir, out_dir: Path, ctx: TargetContext) -> Artifact:
        from forgeml.runtime.quiet import quiet
        from forgeml.errors import require

        source = ctx.converted.source_model if ctx.converted is not None else None
        if ir.provenance.kind != "torch" or source is None:
            raise TargetError(f"torch-aoti: compiles a torch source model, and this run's source is "
                              f"{ir.provenance.kind} ({ir.provenance.ref}); convert a torch model (nn.Module, .pt2, "
                              f"zoo:NAME) or choose another target")
        torch = require("torch", "torch")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        module = source.module() if isinstance(source, torch.export.ExportedProgram) else source
        if not isinstance(module, torch.nn.Module):
            raise TargetError(f"torch-aoti: the source is a {type(module).__name__}, not a torch.nn.Module")
        module = copy.deepcopy(module).to(device).eval()  # the reference keeps running the original on the CPU
        names = ir.signature.input_names
        example = ctx.converted.example_inputs
        args = tuple(torch.from_numpy(np.ascontiguousarray(example[n])).to(device) for n in names)
        dynamic = _dynamic_shapes(torch, ir.signature)

        t0 = time.perf_counter()
        path = out_dir / self.filename
        tmp = out_dir / f".tmp-{os.getpid()}-{self.filename}"  # AOTInductor wants a .pt2 suffix
        try:
            with torch.no_grad(), quiet("torch.export", "torch._dynamo", "torch._inductor", "torch.fx"):
                try:
                    ep = torch.export.export(module, args, dynamic_shapes=dynamic)
                except Exception as e:  # export raises many types; one line says which step failed
                    raise TargetError(f"torch-aoti: torch.export failed: {first_line(e, with_type=True)}") from e
                try:
                    with heartbeat(ctx.progress):  # minutes on a big model, with no steps to count
                        written = torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp))
                except Exception as e:
                    raise TargetError(f"torch-aoti: AOTInductor compilation failed ({device}): {first_line(e, with_type=True)}") from e
            os.replace(written, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        meta = {"device": device, "torch": torch.__version__, "compile_seconds": round(time.perf_counter() - t0, 3),
                "dynamic_dims": {k: v for k, v in _dynamic_json(ir.signature).items()}}
        if device == "cuda":
            major, minor = torch.cuda.get_device_capability()
            meta.update(gpu=torch.cuda.get_device_name(), compute_capability=f"{major}.{minor}")
        if ctx.quantize:
            meta["note"] = f"`quantize.mode` {ctx.quantize} does not apply: the package computes in fp32"
        runtime = f"torch {torch.__version__.split('+')[0]} AOTInductor ({device}, fresh process)"
        return Artifact(self.name, path, [path], runtime=runtime, metadata=meta)

    def opens(self, path: Path) -> bool:
        """A ``.pt2`` is this target's only when it holds compiled code (``data/aotinductor/``): a
        ``torch.export`` archive has the same suffix and is a source, not an artifact."""
        import zipfile

        try:
            with zipfile.ZipFile(path) as z:
                return any("data/aotinductor/" in n for n in z.namelist())
        except (OSError, zipfile.BadZipFile):
            return False

    def open(self, path: Path, ctx: OpenContext) -> Opened:
        """The package in a fresh process (CPU); the names come from the signature.json beside it, since
        the package does not carry them."""
        from forgeml.errors import InputError
        from forgeml.formats.signature import contract_beside

        contract = contract_beside(Path(path).parent)
        if contract is None:
            raise InputError(f"{path}: an AOTInductor package does not name its inputs and outputs; keep the "
                             "signature.json forgeml wrote beside it")
        names, outputs = [t.name for t in contract.inputs], list(contract.outputs)

        def run(inputs):
            return run_package(Path(path), [inputs], names, outputs, "cpu")[0]

        return Opened(checked(run, Path(path)), None, "torch AOTInductor (cpu, fresh process)", "fp32")

    def runner(self, artifact: Artifact, ctx: TargetContext):
        """Outputs for every parity input computed up front in one fresh process, then served by content."""
        device = artifact.metadata.get("device", "cpu")
        names = [s.name for s in ctx.converted.ir.signature.inputs] if ctx.converted else None
        outputs = ctx.converted.ir.signature.output_names if ctx.converted else None
        cache: dict[str, dict[str, np.ndarray]] = {}
        timing = {"repeat": 7, "warmup": 1}  # the package times itself on set 0 in its own process
        if ctx.input_sets:
            for inputs, got in zip(ctx.input_sets, run_package(artifact.path, list(ctx.input_sets), names, outputs,
                                                                device, timing=timing)):
                cache[_key(inputs, names)] = got

        first = _key(ctx.input_sets[0], names) if ctx.input_sets else None
        return checked(PackageRunner(artifact.path, names, outputs, device, cache, timing.get("seconds"), first),
                       artifact.path), "fp32"


class PackageRunner:
    """Serves the outputs a fresh process computed for the package (one more process for inputs it has
    not seen); ``SelfTimed``: its latency is the one the package measured in that process."""

    def __init__(self, package: Path, input_names, output_names, device: str, cache: dict,
                 seconds: list[float] | None, timed_key: str | None):
        self.package, self.input_names, self.output_names, self.device = package, input_names, output_names, device
        self.cache, self.seconds, self.timed_key = cache, seconds, timed_key

    def __call__(self, inputs):
        key = _key(inputs, self.input_names)
        if key not in self.cache:
            self.cache[key] = run_package(self.package, [inputs], self.input_names, self.output_names,
                                          self.device)[0]
        return self.cache[key]

    def latency(self, inputs) -> dict:
        from forgeml.runtime.latency import from_seconds

        if self.seconds and self.timed_key is not None and _key(inputs, self.input_names) == self.timed_key:
            return from_seconds(self.seconds, inputs, "the package's fresh process")
        return {"note": "not timed: outputs are computed up front in a fresh process"}


def run_package(package: Path, input_sets: list[dict], input_names: list[str], output_names: list[str],
                device: str, *, timing: dict | None = None) -> list[dict[str, np.ndarray]]:
    """Load ``package`` in a fresh Python process and run it on each input set.

    ``timing={"repeat": N, "warmup": W}`` also times N calls on the first set there; the seconds per call
    come back in ``timing["seconds"]``.
    """
    with tempfile.TemporaryDirectory(prefix="forgeml-aoti-") as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "inputs.npz", **{f"{k}/{n}": np.ascontiguousarray(s[n])
                                        for k, s in enumerate(input_sets) for n in input_names})
        (tmp / "spec.json").write_text(json.dumps({"package": str(package), "device": device, "sets": len(input_sets),
                                                   "inputs": input_names, "outputs": output_names, **(timing or {})}))
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            proc = subprocess.run([sys.executable, "-m", _WORKER, str(tmp)], env=env, capture_output=True, text=True,
                                  timeout=_LOAD_TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            raise TargetError(f"torch-aoti: loading and running the package took over {_LOAD_TIMEOUT_S} s") from e
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            raise TargetError(f"torch-aoti: the package failed to load or run in a fresh process "
                              f"(rc {proc.returncode}): {tail}")
        if timing is not None and (tmp / "latency.json").is_file():
            timing["seconds"] = json.loads((tmp / "latency.json").read_text())
        with np.load(tmp / "outputs.npz", allow_pickle=False) as data:
            return [{n: data[f"{k}/{n}"] for n in output_names} for k in range(len(input_sets))]


def _key(inputs: dict, names: list[str]) -> str:
    h = hashlib.sha256()
    for n in names:
        a = np.ascontiguousarray(inputs[n])
        h.update(n.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def _dynamic_shapes(torch, signature):
    """torch.export dims for the signature's symbolic dims (one Dim per symbol name, shared across inputs)."""
    dims: dict[str, object] = {}
    spec = []
    any_dynamic = False
    for t in signature.inputs:
        axes = {}
        for i, d in enumerate(t.shape):
            if not isinstance(d, int):
                sym = str(d or f"{t.name}_{i}")
                safe = "".join(c if c.isalnum() else "_" for c in sym)
                axes[i] = dims.setdefault(safe, torch.export.Dim(safe))
                any_dynamic = True
        spec.append(axes or None)
    return tuple(spec) if any_dynamic else None


def _dynamic_json(signature) -> dict:
    return {t.name: [i for i, d in enumerate(t.shape) if not isinstance(d, int)]
            for t in signature.inputs if any(not isinstance(d, int) for d in t.shape)}


