"""Convert an ONNX model bigger than protobuf's 2 GB limit (or bigger than comfortable memory) and
print what it cost: wall time and the whole conversion process's peak RSS.

    flock /work/tools/big.lock python scripts/bigmodel.py --gib 2.2 [--quantize int8|fp16|int4 [--min-top1 X]] [--keep DIR]

The model is built here, seeded, a weight at a time straight into its external-data file (never two
copies in memory): a chain of MatMul and Gemm layers of float32 ``dim x dim`` weights with a tanh
between them, so that outputs depend on inputs. ``forgeml convert`` then runs in a child process
(default passes, the onnx target, parity in onnxruntime) and ``os.wait4`` reports its peak RSS.
Everything is removed afterwards unless ``--keep`` names a directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ALIGN = 1 << 16  # external-data offsets on 64 KiB boundaries: onnxruntime maps aligned tensors


def build_model(out: Path, *, weight_bytes: int, dim: int = 4096, seed: int = 0, batch: int | None = 2) -> Path:
    """Write ``out/model.onnx`` + ``out/model.onnx.data`` with about ``weight_bytes`` of float32 weights.

    Each weight is drawn in row blocks and written at once, so memory holds one block, not the model.
    Layers alternate ``MatMul(x, W)`` and ``Gemm(x, W, b, transB=1)``; returns the .onnx path."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    out.mkdir(parents=True, exist_ok=True)
    layers = max(1, round(weight_bytes / (dim * dim * 4)))
    rng = np.random.default_rng(seed)
    data_name = "model.onnx.data"
    inits, nodes = [], []
    scale = np.float32(1.5 / np.sqrt(dim))  # tanh of unit-scale activations: input-dependent, never saturated
    block = max(1, (32 << 20) // (dim * 4))
    x = "x"
    with open(out / data_name, "wb") as f:
        for i in range(layers):
            name = f"w{i}"
            offset = -f.tell() % ALIGN + f.tell()
            f.seek(offset)
            for r in range(0, dim, block):
                rows = min(block, dim - r)
                f.write((rng.standard_normal((rows, dim), dtype=np.float32) * scale).tobytes())
            t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[dim, dim])
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", data_name), ("offset", str(offset)), ("length", str(dim * dim * 4))):
                t.external_data.add(key=k, value=v)
            inits.append(t)
            y = f"h{i}"
            if i % 2:
                bias = helper.make_tensor(f"b{i}", TensorProto.FLOAT, [dim],
                                          (rng.standard_normal(dim, dtype=np.float32) * 0.1).tolist())
                inits.append(bias)
                nodes.append(helper.make_node("Gemm", [x, name, bias.name], [y], name=f"gemm{i}", transB=1))
            else:
                nodes.append(helper.make_node("MatMul", [x, name], [y], name=f"matmul{i}"))
            x = f"a{i}"
            nodes.append(helper.make_node("Tanh", [y], [x], name=f"tanh{i}"))
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, dim])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, dim])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="bigmodel.py")
    model.ir_version = 8
    path = out / "model.onnx"
    onnx.save(model, path)  # no raw data in the proto: a few KB
    return path


@dataclass
class Measured:
    rc: int
    wall: float  # seconds
    peak_rss: int  # bytes, the child's ru_maxrss from os.wait4
    peak_anon: int  # bytes, the highest RssAnon sampled (memory the kernel cannot drop)
    peak_file: int  # bytes, the highest RssFile sampled (mapped file pages: droppable under pressure)
    output: str


def _sample(pid: int, peaks: dict, stop: threading.Event) -> None:
    while not stop.wait(0.1):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                peaks[key] = max(peaks.get(key, 0), int(value.split()[0]) * 1024)


def run_measured(cmd: list[str]) -> Measured:
    """Run ``cmd``; its wall time, peak RSS (os.wait4) and sampled anonymous/file-backed peaks."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peaks: dict = {}
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(proc.pid, peaks, stop), daemon=True)
    sampler.start()
    out = proc.stdout.read()
    stop.set()
    sampler.join()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(proc.returncode, time.perf_counter() - t0, usage.ru_maxrss * 1024, peaks.get("RssAnon", 0),
                    peaks.get("RssFile", 0), out.decode(errors="replace")[-3000:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=2.2, help="weights to generate, GiB (default 2.2: over the 2 GB limit)")
    ap.add_argument("--dim", type=int, default=8192, help="square weight size (default 8192: 256 MiB per weight)")
    ap.add_argument("--quantize", default="", help="forgeml --quantize mode, e.g. int8")
    ap.add_argument("--min-top1", default="", help="forgeml --min-top1 for --quantize (the random model's 8192 outputs "
                    "are nearly tied, so its top-1 flips on noise that cosine and centered cosine show is small)")
    ap.add_argument("--passes", default="", help="forgeml --passes (default: forgeml's defaults)")
    ap.add_argument("--keep", type=Path, help="build and convert here and keep the files")
    args = ap.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="forgeml-big-", dir=os.environ.get("BIGMODEL_DIR", "/tmp")))
    try:
        t0 = time.perf_counter()
        src = work / "src" / "model.onnx"
        if not src.exists():  # --keep DIR reuses the model built there before
            build_model(work / "src", weight_bytes=int(args.gib * 2**30), dim=args.dim)
        data = src.with_suffix(".onnx.data").stat().st_size
        print(f"model {src} + {data / 2**30:.2f} GiB external data ready in {time.perf_counter() - t0:.1f} s",
              flush=True)
        cmd = [sys.executable, "-c", "import sys; from forgeml.cli.app import main; sys.exit(main())", "convert", str(src), "-o", str(work / "out"), "--to", "onnx",
               "--force"]
        if args.quantize:
            cmd += ["--quantize", args.quantize]
        if args.min_top1:
            cmd += ["--min-top1", args.min_top1]
        if args.passes:
            cmd += ["--passes", args.passes]
        print("$", " ".join(cmd), flush=True)
        m = run_measured(cmd)
        print(m.output)
        files = sorted((work / "out").glob("model.onnx*")) if (work / "out").exists() else []
        sizes = ", ".join(f"{f.name} {f.stat().st_size / 2**30:.3f} GiB" for f in files)
        gib = 2**30
        print(f"exit {m.rc}; wall {m.wall:.1f} s; peak RSS {m.peak_rss / gib:.2f} GiB = {m.peak_rss / data:.2f} x the "
              f"{data / gib:.2f} GiB of weights (sampled peaks: anonymous {m.peak_anon / gib:.2f} GiB, mapped file "
              f"pages {m.peak_file / gib:.2f} GiB); output: {sizes or 'none'}")
        return m.rc
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
