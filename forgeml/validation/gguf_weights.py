"""Weight-level check of a GGUF file: every tensor dequantized and compared with its source tensor.

Logit parity says the file computes the right thing on some tokens; this says every stored tensor
is the source tensor (after the plan's permutation/transpose) up to its type's rounding. It names
the first tensor that is off, which logits cannot. One tensor is in memory at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forgeml.errors import TargetError

# Largest relative RMS error (|deq - src| / |src|) a correct tensor of each type shows.
MAX_REL_RMSE = {"F32": 0.0, "F16": 2e-3, "BF16": 1e-2, "Q8_0": 1e-2, "Q6_K": 3e-2, "Q5_0": 6e-2, "Q5_K": 6e-2,
                "Q4_0": 0.15, "Q4_K": 0.12, "Q4_1": 0.12, "Q5_1": 6e-2, "Q3_K": 0.25, "Q2_K": 0.4}


def check_weights(path: Path, plan, source) -> dict:
    """Compare each tensor; raise ``TargetError`` naming the first that is off. Returns a summary."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    stored = {t.name: t for t in reader.tensors}
    want = {t.name for t in plan.tensors}
    missing = sorted(want - set(stored))
    extra = sorted(set(stored) - want)
    if missing or extra:
        raise TargetError(f"gguf weight check: the file's tensors differ from the plan (missing {missing[:5]}, "
                          f"unexpected {extra[:5]})")
    by_type: dict[str, dict] = {}
    worst = ("", 0.0)
    for t in plan.tensors:
        rt = stored[t.name]
        qname = rt.tensor_type.name
        deq = gguf.quants.dequantize(np.asarray(rt.data), rt.tensor_type).reshape(t.shape).astype(np.float64)
        src = t.apply(source.get(t.source)).astype(np.float64)
        diff = deq - src
        norm = float(np.sqrt(np.sum(src * src)))
        rel = float(np.sqrt(np.sum(diff * diff))) / norm if norm > 0 else float(np.abs(diff).max(initial=0.0))
        max_abs = float(np.abs(diff).max(initial=0.0))
        limit = MAX_REL_RMSE.get(qname, 0.5)
        if not np.isfinite(rel) or rel > limit:
            raise TargetError(f"gguf weight check: {t.name} (from {t.source}, {qname}) differs from the source by "
                              f"relative RMS {rel:.3g} > {limit:g} (max abs {max_abs:.3g}); the file is wrong")
        e = by_type.setdefault(qname, {"tensors": 0, "max_rel_rmse": 0.0, "max_abs": 0.0})
        e["tensors"] += 1
        e["max_rel_rmse"] = max(e["max_rel_rmse"], rel)
        e["max_abs"] = max(e["max_abs"], max_abs)
        if rel >= worst[1]:
            worst = (t.name, rel)
        del deq, src, diff
    return {"tensors": len(plan.tensors), "passed": True, "worst": {"tensor": worst[0], "rel_rmse": worst[1]},
            "by_type": by_type}
