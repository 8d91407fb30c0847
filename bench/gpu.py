"""GPU latency: torch eager vs torch-aoti (AOTInductor) vs TensorRT (when installed) vs onnxruntime, per zoo model.

One command for a machine with an NVIDIA GPU:

    python bench/gpu.py [--models cnn,transformer] [--repeats 200] [--batch 8]

Each model is converted once with forgeml (so every artifact timed here has passed parity first), then
timed with inputs already on the device, with a synchronize around every call; medians are printed
with ratios against torch eager measured in the same run. torch eager, TensorRT and onnxruntime
alternate call by call in this process so a noisy neighbour slows them alike; the AOTInductor package
is timed in a fresh process right after (loading it in the process that compiled it crashed on an H100
with torch 2.11). On a machine without a GPU it prints why it skipped and exits 0.
"""

from __future__ import annotations

from forgeml.runtime.machine import print_machine

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1e3


def _batched(example: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    return {k: np.concatenate([v] * max(1, batch // v.shape[0] + 1))[:batch] for k, v in example.items()}


def bench_model(name: str, repeats: int, batch: int, out_root: Path) -> list[tuple[str, float, str]]:
    import torch

    import forgeml
    from forgeml.targets.torch_aoti.target import run_package
    from models_zoo import ZOO

    built = ZOO[name].build()
    example = _batched(built.example_inputs, batch)
    have_trt = importlib.util.find_spec("tensorrt") is not None
    targets = ["onnx", "torch-aoti"] + (["tensorrt"] if have_trt else [])
    result = forgeml.convert(built.model,
                             example,
                             targets=targets,
                             out_dir=out_root / name,
                             force=True,
                             options=forgeml.ImportOptions(output_names=built.output_names))
    rows_note = {s["name"]: ("parity ok" if s.get("parity", {}).get("passed") else s.get("error", "parity FAIL"))
                 for s in result.manifest["stages"] if s["kind"] == "target"}

    names = list(example)
    model = built.model.cuda().eval()
    dev_args = [torch.from_numpy(example[n]).cuda() for n in names]
    runners = {}

    def eager():
        with torch.inference_mode():
            return model(*dev_args)

    runners["torch eager (cuda)"] = eager

    if "tensorrt" in result.artifacts:
        runners["tensorrt"] = _trt_device_runner(result.artifacts["tensorrt"].path, example, torch)
    runners.update(_ort_runners(result.artifacts["onnx"].path, example))

    times: dict[str, list[float]] = {k: [] for k in runners}
    for i in range(10 + repeats):  # alternate call by call; the first 10 are warm-up
        for label, fn in runners.items():
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            if i >= 10:
                times[label].append(time.perf_counter() - t0)

    timing = {"repeat": repeats, "warmup": 10}
    if "torch-aoti" in result.artifacts:
        run_package(result.artifacts["torch-aoti"].path, [example], names, result.ir.signature.output_names,
                    "cuda", timing=timing)
        times["torch-aoti (fresh process)"] = timing["seconds"]

    base = _median_ms(times["torch eager (cuda)"])
    out = []
    for label, secs in times.items():
        key = "torch-aoti" if label.startswith("torch-aoti") else ("tensorrt" if label == "tensorrt" else
                                                                   "onnx" if label.startswith("onnxruntime") else "")
        out.append((label, _median_ms(secs), rows_note.get(key, "reference") if key else "reference"))
    if "tensorrt" not in result.artifacts:
        out.append(("tensorrt", float("nan"), rows_note.get("tensorrt", "not installed")))
    return [(label, ms, f"{base / ms:5.2f}x" if ms == ms else "–", note) for label, ms, note in out]


def _ort_runners(path: Path, example: dict) -> dict:
    """onnxruntime with the CUDA provider when this onnxruntime has it (device-bound I/O), else nothing."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return {}
    sess = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
    binding = sess.io_binding()
    for n, v in example.items():
        binding.bind_ortvalue_input(n, ort.OrtValue.ortvalue_from_numpy(v, "cuda", 0))
    for o in sess.get_outputs():
        binding.bind_output(o.name, "cuda")
    return {"onnxruntime (cuda)": lambda: sess.run_with_iobinding(binding)}


def _trt_device_runner(engine_path: Path, example: dict, torch):
    """Execute the engine with buffers allocated once on the device: the engine's own time."""
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    context = engine.create_execution_context()
    keep = [runtime, engine]  # alive as long as the context runs
    for i in range(engine.num_io_tensors):
        n = engine.get_tensor_name(i)
        if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT:
            t = torch.from_numpy(example[n].astype(trt.nptype(engine.get_tensor_dtype(n)))).cuda()
            context.set_input_shape(n, tuple(t.shape))
            keep.append(t)
            context.set_tensor_address(n, t.data_ptr())
    for i in range(engine.num_io_tensors):
        n = engine.get_tensor_name(i)
        if engine.get_tensor_mode(n) != trt.TensorIOMode.INPUT:
            shape = tuple(context.get_tensor_shape(n))
            t = torch.from_numpy(np.empty(shape, trt.nptype(engine.get_tensor_dtype(n)))).cuda()
            keep.append(t)
            context.set_tensor_address(n, t.data_ptr())
    stream = torch.cuda.current_stream().cuda_stream

    def run():
        context.execute_async_v3(stream)
        return keep

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="cnn,transformer")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args(argv)
    print_machine()  # first line: which CPU these numbers belong to
    import torch

    if not torch.cuda.is_available():
        print("bench/gpu.py: skipped: no CUDA GPU visible (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}). Run it on a machine with an NVIDIA GPU and a CUDA build of torch; "
              "TensorRT joins when `pip install 'forgeml[tensorrt]'` has installed it.")
        return 0
    major, minor = torch.cuda.get_device_capability()
    trt_note = "not installed"
    if importlib.util.find_spec("tensorrt") is not None:
        import tensorrt

        trt_note = tensorrt.__version__
    print(f"GPU: {torch.cuda.get_device_name()} (sm {major}.{minor}), torch {torch.__version__}, TensorRT {trt_note}; "
          f"batch {args.batch}, {args.repeats} timed calls each, medians; ratio = torch eager / backend (>1: faster)")
    with tempfile.TemporaryDirectory(prefix="forgeml-bench-gpu-") as tmp:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            print(f"\nzoo:{name}")
            print(f"  {'backend':28} {'median ms':>10} {'vs eager':>9}  check")
            for label, ms, ratio, note in bench_model(name, args.repeats, args.batch, Path(tmp)):
                shown = f"{ms:10.3f}" if ms == ms else f"{'–':>10}"
                print(f"  {label:28} {shown} {ratio:>9}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
