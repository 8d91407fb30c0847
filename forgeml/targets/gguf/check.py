"""Weight-level check of a GGUF file: every tensor dequantized and compared with its source tensor.

Logit parity says the file computes the right thing on some tokens; this says every stored tensor
is the source tensor (after the plan's permutation/transpose) up to its type's rounding. It names
the first tensor that is off, which logits cannot.

For the types written here the comparison happens inside the writer's streaming pass (``compare``
on each slice as it is produced, on the writer's worker threads; ``WeightCheck`` sums the slices in
file order), and ``check_layout`` then reads the finished file's tensor table back to prove that
llama.cpp will find those very bytes (names, types, shapes, offsets). K-quants, whose types
llama.cpp's quantizer picks, are read back whole (``check_weights``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forgeml.errors import TargetError

# Largest relative RMS error (|deq - src| / |src|) a correct tensor of each type shows.
MAX_REL_RMSE = {"F32": 0.0, "F16": 2e-3, "BF16": 1e-2, "Q8_0": 1e-2, "Q6_K": 3e-2, "Q5_0": 6e-2, "Q5_K": 6e-2,
                "Q4_0": 0.15, "Q4_K": 0.12, "Q4_1": 0.12, "Q5_1": 6e-2, "Q3_K": 0.25, "Q2_K": 0.4}


def compare(piece, deq: np.ndarray, src: np.ndarray) -> None:
    """Error sums of one slice: squared error, squared source, max |error|. ``deq`` is used as scratch
    when it is a fresh array (an f32 slice's "dequantized" view is the very data being written)."""
    scratch = deq.dtype == np.float32 and deq.flags.writeable and not np.may_share_memory(deq, src)
    diff = np.subtract(deq, src, out=deq if scratch else None)
    piece.max_abs = float(max(diff.max(initial=0.0), -diff.min(initial=0.0)))
    piece.err_sq = float(np.multiply(diff, diff, out=diff).sum(dtype=np.float64))
    piece.src_sq = float(np.square(src).sum(dtype=np.float64))


class WeightCheck:
    """Per-tensor verdicts from the slices' sums, added in file order (so the summary is deterministic)."""

    def __init__(self):
        self.by_type: dict[str, dict] = {}
        self.worst = ("", 0.0)
        self._err = self._src = self._max = 0.0
        self._copied = True  # every slice of the tensor so far was copied as stored

    def add(self, piece) -> None:
        self._copied = self._copied and piece.lossless
        self._err += piece.err_sq
        self._src += piece.src_sq
        self._max = max(self._max, piece.max_abs)

    def finish(self, t, qname: str) -> None:
        """Judge tensor ``t`` from the slices added since the last one; raise naming it when off."""
        err, src, max_abs, copied = self._err, self._src, self._max, self._copied
        self._err = self._src = self._max = 0.0
        self._copied = True
        if copied:  # the source's bits, moved only: exact by construction
            e = self.by_type.setdefault(qname, {"tensors": 0, "max_rel_rmse": 0.0, "max_abs": 0.0})
            e["tensors"] += 1
            e["lossless"] = e.get("lossless", 0) + 1
            return
        rel = (err ** 0.5) / (src ** 0.5) if src > 0 else max_abs
        limit = MAX_REL_RMSE.get(qname, 0.5)
        if not np.isfinite(rel) or rel > limit:
            raise TargetError(f"gguf weight check: {t.name} (from {t.source}, {qname}) differs from the source "
                              f"by relative RMS {rel:.3g} > {limit:g} (max abs {max_abs:.3g}); the file is wrong")
        e = self.by_type.setdefault(qname, {"tensors": 0, "max_rel_rmse": 0.0, "max_abs": 0.0})
        e["tensors"] += 1
        e["max_rel_rmse"] = max(e["max_rel_rmse"], rel)
        e["max_abs"] = max(e["max_abs"], max_abs)
        if rel >= self.worst[1]:
            self.worst = (t.name, rel)

    def summary(self, n: int) -> dict:
        return {"tensors": n, "passed": True, "worst": {"tensor": self.worst[0], "rel_rmse": self.worst[1]},
                "by_type": self.by_type, "how": "in the writing pass; tensor table read back; tensors "
                "counted as lossless hold the source's own bits (same type, only moved), nothing to compare"}


def check_layout(path: Path, plan, types, offsets: dict[str, int]) -> None:
    """The written file's tensor table names each planned tensor with the type, shape and data offset
    the writer used, so the bytes compared while writing are the bytes llama.cpp reads."""
    import gguf

    from forgeml.formats.gguf import tensor_table

    base, table = tensor_table(path)  # the header walked directly (gguf-py's reader: seconds per vocabulary)
    stored = {name: (gguf.GGMLQuantizationType(kind), shape, offset) for name, (kind, shape, offset) in table.items()}
    want = {t.name for t in plan.tensors}
    if set(stored) != want:
        raise TargetError(f"gguf weight check: the file's tensors differ from the plan (missing "
                          f"{sorted(want - set(stored))[:5]}, unexpected {sorted(set(stored) - want)[:5]})")
    for t, qtype in zip(plan.tensors, types):
        got_type, shape, offset = stored[t.name]
        if got_type != qtype or shape != tuple(t.shape) or offset - base != offsets.get(t.name):
            raise TargetError(f"gguf weight check: {t.name}'s table entry ({got_type.name}, shape {shape}, offset "
                              f"{offset - base}) is not what was written ({qtype.name}, {tuple(t.shape)}, "
                              f"{offsets.get(t.name)}); the file is wrong")


def check_weights(path: Path, plan, source, chunks) -> dict:
    """Compare each tensor; raise ``TargetError`` naming the first that is off. Returns a summary."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    # Keep only offsets and types; data is read with plain file reads, slice by slice, so pages of a
    # whole-file memory map do not pile up in RSS for a large model.
    stored = {t.name: (t.tensor_type, int(t.data_offset), int(t.n_bytes)) for t in reader.tensors}
    del reader
    want = {t.name for t in plan.tensors}
    missing = sorted(want - set(stored))
    extra = sorted(set(stored) - want)
    if missing or extra:
        raise TargetError(f"gguf weight check: the file's tensors differ from the plan (missing {missing[:5]}, "
                          f"unexpected {extra[:5]})")
    by_type: dict[str, dict] = {}
    worst = ("", 0.0)
    with open(path, "rb") as f:
        for t in plan.tensors:
            qtype, offset, nbytes = stored[t.name]
            rows = t.shape[0] if len(t.shape) > 1 else 1
            row_bytes = nbytes // rows
            err_sq = src_sq = max_abs = 0.0
            for chunk in chunks(t):
                a, b = (0, rows) if chunk is None else chunk
                f.seek(offset + a * row_bytes)
                raw = np.frombuffer(f.read((b - a) * row_bytes), dtype=np.uint8)
                want_shape = t.shape if chunk is None else (b - a, *t.shape[1:])
                deq = gguf.quants.dequantize(raw, qtype).reshape(want_shape)
                src = t.apply(source.get(t.source) if chunk is None else source.get_rows(t.source, a, b))
                diff = deq.astype(np.float64) - src
                err_sq += float(np.sum(diff * diff))
                src_sq += float(np.sum(np.square(src, dtype=np.float64)))
                max_abs = max(max_abs, float(np.abs(diff).max(initial=0.0)))
                del raw, deq, src, diff
            qname = qtype.name
            rel = (err_sq ** 0.5) / (src_sq ** 0.5) if src_sq > 0 else max_abs
            limit = MAX_REL_RMSE.get(qname, 0.5)
            if not np.isfinite(rel) or rel > limit:
                raise TargetError(f"gguf weight check: {t.name} (from {t.source}, {qname}) differs from the source "
                                  f"by relative RMS {rel:.3g} > {limit:g} (max abs {max_abs:.3g}); the file is wrong")
            e = by_type.setdefault(qname, {"tensors": 0, "max_rel_rmse": 0.0, "max_abs": 0.0})
            e["tensors"] += 1
            e["max_rel_rmse"] = max(e["max_rel_rmse"], rel)
            e["max_abs"] = max(e["max_abs"], max_abs)
            if rel >= worst[1]:
                worst = (t.name, rel)
    return {"tensors": len(plan.tensors), "passed": True, "worst": {"tensor": worst[0], "rel_rmse": worst[1]},
            "by_type": by_type}
