"""tensorrt: a serialized TensorRT engine built from the ONNX IR, executed back for parity.

An engine runs only on the TensorRT version and GPU architecture it was built with, so the manifest
records both. Steps: the static readiness check (``forgeml check-trt``: no GPU needed, fails in a second
instead of minutes into a build), then TensorRT's ONNX parser, a builder config (workspace limit,
precision flags, one optimization profile covering every dynamic input), a timing cache kept between
builds, and the engine. Precision follows ``quantize.mode``:

* none: FP32 with TF32 disabled (TF32 would miss the fp32 tolerance by design);
* ``fp16``: the last fp32 IR with the FP16 builder flag (TensorRT picks per-layer precision, I/O stays fp32);
* ``int8-static``: the QDQ graph as it is, with INT8 (+FP16) flags: explicit quantization, scales from the
  graph, no calibrator;
* ``int8`` (dynamic) and ``int4``: refused; TensorRT has no dynamic quantization.

Device buffers come from torch (CUDA), which the ``[tensorrt]`` extra installs beside TensorRT.
This code path needs TensorRT and an NVIDIA GPU; CI has neither, and its test skips with the reason.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forgeml.errors import InputError, TargetError, first_line
from forgeml.fileio import write_bytes_atomic
from forgeml.targets.base import Artifact, TargetContext

log = logging.getLogger(__name__)

_INSTALL = ("install it on a Linux machine with an NVIDIA GPU and driver: pip install 'forgeml[tensorrt]' "
            "(TensorRT's libraries download from NVIDIA's package index, pypi.nvidia.com)")


# --- config ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrtProfile:
    """Shapes one input may take in the engine: ``TensorRTConfig.profiles name:MIN:OPT:MAX`` (dims joined by x)."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> TrtProfile:
        parts = text.rsplit(":", 3)
        if len(parts) != 4 or not parts[0]:
            raise InputError(f"`TensorRTConfig.profiles` {text!r}: expected name:MIN:OPT:MAX, e.g. x:1x3x224x224:8x3x224x224:32x3x224x224")
        try:
            shapes = [tuple(int(d) for d in p.lower().split("x")) for p in parts[1:]]
        except ValueError:
            raise InputError(f"`TensorRTConfig.profiles` {text!r}: dims must be integers joined by 'x'") from None
        lo, opt, hi = shapes
        if not (len(lo) == len(opt) == len(hi)):
            raise InputError(f"`TensorRTConfig.profiles` {text!r}: MIN, OPT and MAX must have the same rank")
        if any(d < 0 for s in shapes for d in s) or not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
            raise InputError(f"`TensorRTConfig.profiles` {text!r}: needs 0 <= MIN <= OPT <= MAX in every dim")
        return cls(parts[0], lo, opt, hi)

    def to_json(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


@dataclass(frozen=True)
class TensorRTConfig:
    profiles: tuple[TrtProfile, ...] = ()  # per dynamic input; the rest derive from the parity inputs
    workspace_mib: int = 1024  # builder workspace memory pool limit
    timing_cache: Path | None = None  # None: ~/.cache/forgeml/tensorrt/, one file per TensorRT version and GPU
    readiness_table: str | None = None  # support table for the pre-build check; None: by installed TensorRT
    plugins: tuple[str, ...] = ()  # custom ops whose TensorRT plugins the user loads


def resolve_profiles(signature, input_sets, given: tuple[TrtProfile, ...] = ()) -> dict[str, TrtProfile]:
    """One min/opt/max per input with a dynamic dim: the user's, or derived from the parity inputs.

    Derived: MIN 1, OPT the example input's size, MAX the largest parity input's. Every parity input must
    fit, since parity runs them all through the engine.
    """
    specs = {s.name: s for s in signature.inputs}
    unknown = [p.name for p in given if p.name not in specs]
    if unknown:
        raise TargetError(f"tensorrt: `TensorRTConfig.profiles` names {unknown}, which are not model inputs "
                          f"({', '.join(specs)})")
    by_name = {p.name: p for p in given}
    out: dict[str, TrtProfile] = {}
    for name, spec in specs.items():
        dynamic = [i for i, d in enumerate(spec.shape) if not isinstance(d, int)]
        seen = [tuple(s[name].shape) for s in input_sets if name in s]
        if name in by_name:
            p = by_name[name]
            if len(p.min) != len(spec.shape):
                raise TargetError(f"tensorrt: `TensorRTConfig.profiles` {name}: rank {len(p.min)}, but the input has rank "
                                  f"{len(spec.shape)} ({spec.describe()})")
            for i, d in enumerate(spec.shape):
                if isinstance(d, int) and not (p.min[i] == p.opt[i] == p.max[i] == d):
                    raise TargetError(f"tensorrt: `TensorRTConfig.profiles` {name}: dim {i} is fixed at {d} in the model")
        elif dynamic:
            if not seen:
                raise TargetError(f"tensorrt: input {name} has dynamic dims and no example; give `TensorRTConfig.profiles`")
            opt = seen[0]
            hi = tuple(max(s[i] for s in seen) for i in range(len(opt)))
            lo = tuple(1 if i in dynamic else opt[i] for i in range(len(opt)))
            p = TrtProfile(name, lo, opt, hi)
        else:
            continue
        for shape in seen:
            if not all(a <= d <= b for a, d, b in zip(p.min, shape, p.max)):
                raise TargetError(f"tensorrt: parity input {name} has shape {'x'.join(map(str, shape))}, outside the "
                                  f"profile {'x'.join(map(str, p.min))}..{'x'.join(map(str, p.max))}; widen `TensorRTConfig.profiles`")
        out[name] = p
    return out


@dataclass(frozen=True)
class BuildPlan:
    """Which graph to build and with which builder flags, from the run's `quantize.mode`."""

    source: str  # "ir" or "float_ir"
    flags: tuple[str, ...]  # BuilderFlag names to set
    clear: tuple[str, ...]  # BuilderFlag names to clear
    precision: str  # the tolerance profile parity judges by


def plan_for(quantize: str | None, ir) -> BuildPlan:
    if quantize in (None, ""):
        return BuildPlan("ir", (), ("TF32",), ir.precision)
    if quantize == "fp16":
        return BuildPlan("float_ir", ("FP16",), (), "fp16")
    if quantize == "int8-static":
        ops = {n.op_type for n in ir.model.graph}
        if not {"QuantizeLinear", "DequantizeLinear"} & ops:
            raise TargetError("tensorrt: `quantize.mode` int8-static left no QuantizeLinear/DequantizeLinear nodes in "
                              "the graph; TensorRT's explicit quantization needs them")
        return BuildPlan("ir", ("INT8", "FP16"), (), "int8")
    if quantize == "int8":
        raise TargetError("tensorrt: TensorRT has no dynamic quantization; use `quantize.mode` int8-static (QDQ with "
                          "calibration data) or fp16")
    raise TargetError(f"tensorrt: `quantize.mode` {quantize} is not supported for TensorRT engines; use fp16 or int8-static")


# --- the target --------------------------------------------------------------------------------

class TensorRTTarget:
    suffixes = (".engine",)
    name = "tensorrt"
    Config = TensorRTConfig
    filename = "model.engine"

    def build(self, ir, out_dir: Path, ctx: TargetContext) -> Artifact:
        from forgeml.targets.tensorrt.readiness import check_model

        cfg = ctx.config if isinstance(ctx.config, TensorRTConfig) else TensorRTConfig()
        plan = plan_for(ctx.quantize, ir)
        graph_ir = ctx.float_ir if plan.source == "float_ir" and ctx.float_ir is not None else ir
        proto = graph_ir.to_proto()
        table = cfg.readiness_table or _table_for_installed()
        readiness = check_model(proto, tensorrt=table, plugins=cfg.plugins)
        if not readiness.ready:
            first = "; ".join(f"{f.op or f.rule} {f.node!r}: {f.rule}" for f in readiness.blocking[:3])
            raise TargetError(f"tensorrt: the model is {readiness.summary()} ({first}); run `forgeml check-trt "
                              f"model.onnx` on the onnx artifact for every finding")
        profiles = resolve_profiles(graph_ir.signature, ctx.input_sets, cfg.profiles)
        try:
            trt, torch = _runtime()
            device = _device(torch)
        except TargetError as e:
            raise TargetError(f"{e} (the static readiness check passed: {readiness.summary()})") from e

        t0 = time.perf_counter()
        logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(logger, "")
        builder = trt.Builder(logger)
        network = builder.create_network(_network_flags(trt))
        parser = trt.OnnxParser(network, logger)
        with tempfile.TemporaryDirectory(prefix="forgeml-trt-") as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            _save_for_parser(proto, onnx_path)
            if not parser.parse_from_file(str(onnx_path)):
                errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
                raise TargetError(f"tensorrt: TensorRT's ONNX parser rejected the model: "
                                  f"{' | '.join((e.strip().splitlines() or [''])[0] for e in errors[:3]) or 'no error given'}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mib << 20)
        for flag in plan.flags:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        for flag in plan.clear:
            config.clear_flag(getattr(trt.BuilderFlag, flag))
        if profiles:
            profile = builder.create_optimization_profile()
            for p in profiles.values():
                profile.set_shape(p.name, p.min, p.opt, p.max)
            config.add_optimization_profile(profile)
        cache_path = cfg.timing_cache or _default_cache(trt.__version__, device["compute_capability"])
        reused = cache_path.read_bytes() if cache_path.is_file() else b""
        cache = config.create_timing_cache(reused)
        if not config.set_timing_cache(cache, False):  # ignore_mismatch=False: a stale cache is not used
            log.warning("tensorrt: timing cache %s does not match this TensorRT/GPU; starting a new one", cache_path)
            reused = b""
            config.set_timing_cache(config.create_timing_cache(b""), False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise TargetError("tensorrt: the engine build failed (TensorRT's log above says why; a larger "
                              "`TensorRTConfig.workspace_mib` or a narrower `TensorRTConfig.profiles` may help)")
        saved = bytes(config.get_timing_cache().serialize())
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(cache_path, saved)
        except OSError as e:  # a cache that cannot be written costs time on the next build, not this one
            log.warning("tensorrt: could not save the timing cache to %s: %s", cache_path, e)
            saved = b""
        seconds = time.perf_counter() - t0

        path = out_dir / self.filename
        write_bytes_atomic(path, bytes(serialized))
        meta = {
            "tensorrt_version": trt.__version__,
            "gpu": device["name"],
            "compute_capability": device["compute_capability"],
            "runs_on": f"TensorRT {trt.__version__} on GPUs of compute capability {device['compute_capability']}",
            "precision": plan.precision,
            "builder_flags": list(plan.flags), "cleared_flags": list(plan.clear),
            "workspace_mib": cfg.workspace_mib,
            "profiles": {n: p.to_json() for n, p in profiles.items()},
            "timing_cache": {"path": str(cache_path), "reused_bytes": len(reused), "saved_bytes": len(saved)},
            "build_seconds": round(seconds, 3),
            "readiness": {"table": readiness.tensorrt, **readiness.counts()},
        }
        return Artifact(self.name, path, [path], runtime=f"TensorRT {trt.__version__} on {device['name']}",
                        metadata=meta, built_from=graph_ir)

    def runner(self, artifact: Artifact, ctx: TargetContext):
        from forgeml.runtime.ort import ort_runner_for_ir

        trt, torch = _runtime()
        engine_run = engine_runner(artifact.path.read_bytes(), trt, torch)
        # The graph the engine was built from travels on the artifact (None for an engine read from disk);
        # ort_runner_for_ir handles graphs past protobuf's 2 GB limit.
        ort = ort_runner_for_ir(artifact.built_from.model) if artifact.built_from is not None else None
        worst: dict[str, float] = {}

        def run(inputs):
            got = engine_run(inputs)
            if ort is not None:  # the engine beside onnxruntime on the very graph it was built from
                for name, value in ort(inputs).items():
                    if name in got:
                        d = float(np.max(np.abs(got[name].astype(np.float64) - value.astype(np.float64)), initial=0))
                        worst[name] = max(worst.get(name, 0.0), d)
                artifact.metadata["vs_onnxruntime_max_abs"] = dict(worst)
            return got

        return run, artifact.metadata.get("precision")


class EngineRunner:
    """A deserialized TensorRT engine: numpy in, numpy out, by tensor name (the ONNX graph's names).
    ``engine`` is there for benchmarks; ``runtime`` must outlive the engine deserialized from it."""

    def __init__(self, runtime, engine, trt, torch):
        self.runtime, self.engine, self._trt, self._torch = runtime, engine, trt, torch
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]

    def _host_dtype(self, name):
        return np.dtype(self._trt.nptype(self.engine.get_tensor_dtype(name)))

    def __call__(self, feeds):
        torch, context = self._torch, self.context
        keep = []
        for n in self.inputs:
            if n not in feeds:
                raise TargetError(f"tensorrt: no value given for engine input {n!r}")
            a = np.ascontiguousarray(feeds[n])
            want = self._host_dtype(n)
            if a.dtype != want:
                if a.dtype.kind in "iu" and want.kind in "iu" and a.size and (
                        a.min() < np.iinfo(want).min or a.max() > np.iinfo(want).max):
                    raise TargetError(f"tensorrt: input {n!r} has values outside the engine's {want} range")
                a = a.astype(want)
            t = torch.from_numpy(a).cuda()
            keep.append(t)
            if not context.set_input_shape(n, tuple(a.shape)):
                raise TargetError(f"tensorrt: input {n!r} shape {a.shape} is outside the engine's optimization profile")
            context.set_tensor_address(n, t.data_ptr())
        results = {}
        for n in self.outputs:
            shape = tuple(context.get_tensor_shape(n))
            if any(d < 0 for d in shape):
                raise TargetError(f"tensorrt: output {n!r} has a data-dependent shape; forgeml's engine runner needs "
                                  f"output shapes known from the input shapes")
            t = torch.from_numpy(np.empty(shape, self._host_dtype(n))).cuda()
            context.set_tensor_address(n, t.data_ptr())
            results[n] = t
        stream = torch.cuda.current_stream()
        if not context.execute_async_v3(stream.cuda_stream):
            raise TargetError("tensorrt: engine execution failed")
        stream.synchronize()
        del keep
        return {n: t.cpu().numpy() for n, t in results.items()}


def engine_runner(engine_bytes: bytes, trt, torch) -> EngineRunner:
    """Execute a serialized engine (see ``EngineRunner``)."""
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    if engine is None:
        raise TargetError("tensorrt: could not deserialize the engine (built by another TensorRT version or GPU?)")
    return EngineRunner(runtime, engine, trt, torch)


# --- what the machine has ----------------------------------------------------------------------

def _runtime():
    """(tensorrt, torch) modules, or a TargetError saying which is missing and how to get it."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TargetError(f"tensorrt: TensorRT is not installed (no Python module 'tensorrt'); {_INSTALL}") from e
    except OSError as e:  # the wheel is there but its shared libraries are not
        raise TargetError(f"tensorrt: the 'tensorrt' module is installed but its libraries do not load "
                          f"({first_line(e)}); {_INSTALL}") from e
    try:
        import torch
    except ImportError as e:
        raise TargetError("tensorrt: the engine runner allocates GPU memory with torch, which is not installed; "
                          "pip install 'forgeml[tensorrt]' (a CUDA build of torch)") from e
    return trt, torch


def _device(torch) -> dict:
    if not torch.cuda.is_available():
        raise TargetError("tensorrt: no CUDA GPU is visible (torch.cuda.is_available() is False); TensorRT builds "
                          "and runs engines only on an NVIDIA GPU: run on a machine with one, its driver, and a "
                          "CUDA build of torch")
    major, minor = torch.cuda.get_device_capability()
    return {"name": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}"}


def _network_flags(trt) -> int:
    """Explicit batch: the default (and the only mode) from TensorRT 10; a flag before it."""
    major = int(trt.__version__.split(".")[0])
    if major >= 10:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def _table_for_installed() -> str:
    """The readiness table matching the installed TensorRT (10.1 when none is installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major = int(version("tensorrt").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return "10.1"
    return "8.5" if major < 9 else "10.1"


def _default_cache(trt_version: str, cc: str) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "forgeml" / "tensorrt" / f"timing-trt{trt_version}-sm{cc.replace('.', '')}.cache"


def _save_for_parser(proto, path: Path) -> None:
    """Write the ONNX for ``parse_from_file`` (which follows external data beside it)."""
    import onnx

    if proto.ByteSize() < 2**31 - 1:
        path.write_bytes(proto.SerializeToString())
    else:
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data")
