"""Q8_0 quantization with its weight check fused in, in cache-sized blocks.

gguf-py's reference quantizer, then its dequantizer, then the comparison each walk the whole slice
several times through main memory (a dozen temporaries of the slice's size); on a 1 GB checkpoint
that was most of the writer's time. Here each run of ``SUB_BLOCKS`` blocks (256 KB of float32) is
quantized, packed, dequantized and compared while it is in cache. The bytes are gguf-py's (and
ggml's reference ``quantize_row_q8_0``): scale ``max|x| / 127`` in float32, values rounded half away
from zero (``np.rint`` plus an exact fix-up of the ties it rounds to even), scale stored as float16;
the error is measured against the float16 scale llama.cpp reads.
"""

from __future__ import annotations

import numpy as np

QK8_0 = 32
SUB_BLOCKS = 2048


def q8_0_checked(x: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """``x`` float32 with rows a multiple of 32 long -> (Q8_0 bytes shaped (rows, row bytes), sum of squared
    error after dequantization, sum of squared source, max |error|)."""
    rows = x.shape[0] if x.ndim > 1 else 1
    xb = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, QK8_0)
    n = xb.shape[0]
    out = np.empty((n, 2 + QK8_0), np.uint8)
    err_sq = src_sq = max_abs = 0.0
    sub = min(SUB_BLOCKS, n)
    work, scaled = np.empty((sub, QK8_0), np.float32), np.empty((sub, QK8_0), np.float32)
    q = np.empty((sub, QK8_0), np.int8)
    for s in range(0, n, sub):
        blk = xb[s:s + sub]
        m = blk.shape[0]
        r, v, qs = work[:m], scaled[:m], q[:m]
        d = np.abs(blk, out=r).max(axis=1)
        d /= np.float32(127)
        with np.errstate(divide="ignore"):
            inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
        np.multiply(blk, inv[:, None], out=v)
        np.rint(v, out=r)
        np.subtract(v, r, out=v)  # exact (Sterbenz): a tie shows as exactly +-0.5
        ties = np.flatnonzero(np.abs(v, out=v) == 0.5)
        if ties.size:  # rint rounds ties to even; ggml's roundf rounds them away from zero
            t = (blk * inv[:, None]).reshape(-1)[ties]
            r.reshape(-1)[ties] = np.trunc(t) + np.sign(t)
        np.copyto(qs, r, casting="unsafe")
        o = out[s:s + m]
        pack(o, d.astype(np.float16), qs)
        # the check reads the packed bytes back, as llama.cpp will: a packing error cannot hide
        np.copyto(r, o[:, 2:].view(np.int8), casting="safe")
        np.multiply(r, o[:, :2].view(np.float16).astype(np.float32), out=r)
        np.subtract(r, blk, out=r)
        e, b = r.reshape(-1), blk.reshape(-1)
        err_sq += float(np.dot(e, e))
        src_sq += float(np.dot(b, b))
        max_abs = max(max_abs, float(np.abs(e, out=v.reshape(-1)).max()))
    return out.reshape(rows, -1), err_sq, src_sq, max_abs


def pack(o: np.ndarray, d16: np.ndarray, qs: np.ndarray) -> None:
    """Blocks as ggml lays them out: the float16 scale, then 32 int8 values."""
    o[:, :2] = d16.view(np.uint8).reshape(-1, 2)
    o[:, 2:] = qs.view(np.uint8)
