"""Run an AOTInductor ``.pt2`` package in this (fresh) process: ``python -m forgeml.targets.torch_aoti.worker DIR``.

DIR holds ``spec.json`` (package, device, input/output names, number of input sets) and ``inputs.npz``
(``"{set}/{input}"`` keys); this writes ``outputs.npz`` (``"{set}/{output}"``) beside them, and with
``repeat`` in the spec also ``latency.json`` (seconds per call on set 0, for ``bench/gpu.py``). Kept apart from
``torch_aoti`` so the process that loads the package never compiled anything.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(folder: str) -> int:
    import numpy as np
    import torch
    from torch._inductor import aoti_load_package

    # fp32 means fp32: no TF32 in cuDNN convolutions or cuBLAS matmuls (both would miss the fp32 tolerance).
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    tmp = Path(folder)
    spec = json.loads((tmp / "spec.json").read_text())
    compiled = aoti_load_package(spec["package"])
    results = {}
    with np.load(tmp / "inputs.npz", allow_pickle=False) as data, torch.no_grad():
        for k in range(spec["sets"]):
            args = [torch.from_numpy(data[f"{k}/{n}"]).to(spec["device"]) for n in spec["inputs"]]
            out = compiled(*args)
            values = [out] if isinstance(out, torch.Tensor) else list(out.values() if isinstance(out, dict) else out)
            if len(values) != len(spec["outputs"]):
                print(f"the package returned {len(values)} outputs, expected {len(spec['outputs'])}", file=sys.stderr)
                return 3
            for name, v in zip(spec["outputs"], values):
                results[f"{k}/{name}"] = v.detach().cpu().numpy()
    np.savez(tmp / "outputs.npz", **results)
    if spec.get("repeat"):  # bench/gpu.py: latency of set 0, measured here because this process loaded it
        _time(compiled, tmp, spec, torch, np)
    return 0


def _time(compiled, tmp: Path, spec: dict, torch, np) -> None:
    import time

    with np.load(tmp / "inputs.npz", allow_pickle=False) as data:
        args = [torch.from_numpy(data[f"0/{n}"]).to(spec["device"]) for n in spec["inputs"]]
    sync = torch.cuda.synchronize if spec["device"] == "cuda" else (lambda: None)
    seconds = []
    with torch.no_grad():
        for i in range(spec.get("warmup", 10) + spec["repeat"]):
            sync()
            t0 = time.perf_counter()
            compiled(*args)
            sync()
            if i >= spec.get("warmup", 10):
                seconds.append(time.perf_counter() - t0)
    (tmp / "latency.json").write_text(json.dumps(seconds))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
