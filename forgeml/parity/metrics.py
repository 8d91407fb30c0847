"""Per-output error metrics, accumulated over several input batches.

Plain cosine and top-1 look perfect on random-weight models whose outputs barely depend on the
input, so a *centered* cosine is reported beside them: it measures the input-dependent part of the
output. Each output is centered on its mean over every sample of every batch (pooled), so a model
whose example has batch 1 still gets one; per-batch centering is the fallback when samples of
different batches have different shapes (or the per-sample output is too large to hold sums for).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forgeml.parity.tolerances import Tolerance


CACHE_PREFIXES = ("present.", "present_key_values.")  # a decoder's KV cache (genai/Optimum names)
POOL_MAX_ELEMENTS = 1 << 20  # per-sample size up to which pooled centering keeps per-position sums (float64)


def looks_like_scores(a: np.ndarray, name: str = "") -> bool:
    """Float outputs of rank >= 2 with a last axis of 2+ entries: class scores or logits. Not a
    decoder's KV cache, whose last axis is head_dim: top-1 over it would mean nothing."""
    return a.dtype.kind == "f" and a.ndim >= 2 and a.shape[-1] >= 2 and not name.startswith(CACHE_PREFIXES)


@dataclass
class OutputAccumulator:
    """Streams batches of (reference, candidate) for one output and yields one metrics row."""

    name: str
    problems: list[str] = field(default_factory=list)
    n: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    sum_abs: float = 0.0
    atol_needed: float = 0.0  # smallest atol that would pass at the profile's rtol
    dot: float = 0.0
    ref_sq: float = 0.0
    cand_sq: float = 0.0
    cdot: float = 0.0
    cref_sq: float = 0.0
    ccand_sq: float = 0.0
    centered_batches: int = 0
    # pooled centering: per-position sums of (value - shift), the shift being the first batch's mean
    # (the shifted-data form: no cancellation when a large constant offset dominates the outputs)
    pool_ok: bool = True
    pool_n: int = 0
    pool_shift: tuple | None = None  # (reference shift, candidate shift), per position
    pool_sums: tuple | None = None  # (sum ref, sum cand), per position
    pool_dot: float = 0.0
    pool_ref_sq: float = 0.0
    pool_cand_sq: float = 0.0
    top1_hits: int = 0
    top1_total: int = 0
    exact_hits: int = 0
    exact_total: int = 0
    sum_sq: float = 0.0
    top1_gaps: list = field(default_factory=list)  # reference top-1 minus top-2, per position
    top1_agree: list = field(default_factory=list)  # candidate's top-1 == reference's, per position

    def add(self, ref: np.ndarray, cand: np.ndarray, rtol: float) -> None:
        ref, cand = np.asarray(ref), np.asarray(cand)
        if ref.shape != cand.shape:
            self.problems.append(f"shape {tuple(cand.shape)} != reference {tuple(ref.shape)}")
            return
        if ref.dtype.kind in "OUS" or cand.dtype.kind in "OUS":
            # Text outputs (class labels of a classifier trained on strings): exact agreement only.
            self.exact_hits += int(np.sum(ref.astype(str) == cand.astype(str)))
            self.exact_total += ref.size
            self.n += ref.size
            return
        if ref.dtype.kind in "iub" or cand.dtype.kind in "iub":
            if ref.dtype.kind == "f" or cand.dtype.kind == "f":
                self.problems.append(f"dtype {cand.dtype} != reference {ref.dtype}")
                return
            self.exact_hits += int(np.sum(ref == cand))
            self.exact_total += ref.size
            d = np.abs(ref.astype(np.float64) - cand.astype(np.float64))
            self.max_abs = max(self.max_abs, float(d.max(initial=0.0)))
            self.n += ref.size
            self.sum_abs += float(d.sum())
            return
        r = ref.astype(np.float64)
        c = cand.astype(np.float64)
        bad_c, bad_r = ~np.isfinite(c), ~np.isfinite(r)
        if np.any(bad_c & ~bad_r):
            self.problems.append(f"{int(np.sum(bad_c & ~bad_r))} non-finite values where the reference is finite")
        both = np.isfinite(r) & np.isfinite(c)
        r, c = np.where(both, r, 0.0), np.where(both, c, 0.0)
        d = np.abs(c - r)
        self.n += d.size
        self.sum_abs += float(d.sum())
        self.max_abs = max(self.max_abs, float(d.max(initial=0.0)))
        floor = max(1e-12, 1e-6 * float(np.abs(r).max(initial=0.0)))
        self.max_rel = max(self.max_rel, float((d / np.maximum(np.abs(r), floor)).max(initial=0.0)))
        self.atol_needed = max(self.atol_needed, float((d - rtol * np.abs(r)).max(initial=0.0)))
        self.dot += float(np.sum(r * c))
        self.ref_sq += float(np.sum(r * r))
        self.cand_sq += float(np.sum(c * c))
        if r.ndim >= 1 and r.shape[0] >= 2:
            rc, cc = r - r.mean(axis=0), c - c.mean(axis=0)
            self.cdot += float(np.sum(rc * cc))
            self.cref_sq += float(np.sum(rc * rc))
            self.ccand_sq += float(np.sum(cc * cc))
            self.centered_batches += 1
        self._pool(r, c)
        self.sum_sq += float(np.sum(d * d))
        if looks_like_scores(ref, self.name):
            self.top1_hits += int(np.sum(ref.argmax(-1) == cand.argmax(-1)))
            self.top1_total += int(np.prod(ref.shape[:-1]))
            top2 = np.partition(r, -2, axis=-1)
            self.top1_gaps.append((top2[..., -1] - top2[..., -2]).ravel())
            self.top1_agree.append((ref.argmax(-1) == cand.argmax(-1)).ravel())

    def _pool(self, r: np.ndarray, c: np.ndarray) -> None:
        """Accumulate for centering on the mean over all samples (axis 0 of every batch)."""
        if not self.pool_ok:
            return
        if r.ndim == 0 or r[0].size > POOL_MAX_ELEMENTS or (
                self.pool_shift is not None and self.pool_shift[0].shape != r.shape[1:]):
            self.pool_ok = False
            return
        if self.pool_shift is None:
            self.pool_shift = (r.mean(axis=0), c.mean(axis=0))
            self.pool_sums = (np.zeros(r.shape[1:]), np.zeros(r.shape[1:]))
        rs, cs = r - self.pool_shift[0], c - self.pool_shift[1]
        self.pool_sums[0][...] += rs.sum(axis=0)
        self.pool_sums[1][...] += cs.sum(axis=0)
        self.pool_dot += float(np.sum(rs * cs))
        self.pool_ref_sq += float(np.sum(rs * rs))
        self.pool_cand_sq += float(np.sum(cs * cs))
        self.pool_n += r.shape[0]

    def _centered(self) -> float | None:
        """Centered cosine pooled over every sample; per batch when pooling was impossible; None with one sample."""
        if self.pool_ok and self.pool_n >= 2:
            sr, sc = self.pool_sums
            n = self.pool_n
            dot = self.pool_dot - float(np.sum(sr * sc)) / n
            a = max(self.pool_ref_sq - float(np.sum(sr * sr)) / n, 0.0)
            b = max(self.pool_cand_sq - float(np.sum(sc * sc)) / n, 0.0)
            return self._cos(dot, a, b)
        if self.centered_batches:
            return self._cos(self.cdot, self.cref_sq, self.ccand_sq)
        return None

    def _top1_margin(self) -> dict:
        """Top-1 agreement where the reference's lead is beyond the stage's noise.

        A position whose top-1/top-2 gap is within the error this stage makes anyway can flip by
        tie-breaking; counting only gaps > 4x the RMS logit error measures the artifact, not ties.
        """
        gaps, agree = np.concatenate(self.top1_gaps), np.concatenate(self.top1_agree)
        noise = (self.sum_sq / max(self.n, 1)) ** 0.5
        decided = gaps > 4 * noise
        out = {"top1_decided_fraction": float(decided.mean()) if decided.size else 0.0,
               "top1_decided": int(decided.sum()), "top1_noise": float(noise)}
        if decided.any():
            out["top1_margin"] = float(agree[decided].mean())
        return out

    @staticmethod
    def _judge_decided(row: dict, tol: Tolerance) -> list[str]:
        """Top-1 on the decided positions (``top1_margin``); too few of them: a warning, no verdict."""
        k, need = row["top1_decided"], tol.min_decided or 1
        if k < need:
            row["top1_judged"] = "not judged"
            row["warning"] = (f"top-1 not judged: only {k} positions have a reference top-1 lead above the "
                              f"noise (4 x RMS error {row['top1_noise']:.3g}), {need} needed; raw top-1 "
                              f"{row['top1']:.4f} measures tie-breaking here")
            return []
        row["top1_judged"] = "decided"
        margin = row["top1_margin"]
        if margin < tol.min_top1:
            return [f"top-1 agreement on {k} decided positions {margin:.4f} < {tol.min_top1:g} "
                    f"(raw top-1 {row['top1']:.4f})"]
        return []

    @staticmethod
    def _cos(dot: float, a: float, b: float) -> float:
        if a == 0.0 and b == 0.0:
            return 1.0
        if a == 0.0 or b == 0.0:
            return 0.0
        return dot / (a ** 0.5 * b ** 0.5)

    def row(self, tol: Tolerance) -> dict:
        row: dict = {"output": self.name}
        if self.problems:
            row.update(passed=False, problem="; ".join(dict.fromkeys(self.problems)))
            if self.n == 0:
                return row
        if self.exact_total:
            agree = self.exact_hits / self.exact_total
            # Integer outputs (labels, ids) must agree exactly, except in profiles that allow
            # some top-1 disagreement, where labels are judged by the same fraction.
            needed = tol.min_top1 if tol.min_top1 is not None and tol.atol is None else 1.0
            row.update(max_abs=self.max_abs, exact_match=agree, passed=not self.problems and agree >= needed)
            if agree < needed:
                row["problem"] = f"exact agreement {agree:.4f} < {needed:g}"
            return row
        cos = self._cos(self.dot, self.ref_sq, self.cand_sq)
        row.update(max_abs=self.max_abs, max_rel=self.max_rel, mean_abs=self.sum_abs / max(self.n, 1),
                   cosine=cos)
        centered = self._centered()
        if centered is not None:
            row["centered_cosine"] = centered
        if self.top1_total:
            row["top1"] = self.top1_hits / self.top1_total
            row.update(self._top1_margin())
        row["atol_needed"] = self.atol_needed
        failures = list(row.get("problem", "").split("; ")) if self.problems else []
        if tol.atol is not None and self.atol_needed > tol.atol:
            failures.append(f"max abs error {self.max_abs:.3g} exceeds {tol.atol:g} + {tol.rtol:g}*|ref|")
        if cos < tol.min_cosine:
            failures.append(f"cosine {cos:.6f} < {tol.min_cosine:g}")
        cc = row.get("centered_cosine")
        if cc is not None and tol.min_centered_cosine is not None and cc < tol.min_centered_cosine:
            failures.append(f"centered cosine {cc:.6f} < {tol.min_centered_cosine:g}")
        t1 = row.get("top1")
        if t1 is not None and tol.min_top1 is not None and tol.top1_on == "decided":
            failures += self._judge_decided(row, tol)
        elif t1 is not None and tol.min_top1 is not None and t1 < tol.min_top1:
            failures.append(f"top-1 agreement {t1:.4f} < {tol.min_top1:g}")
        row["passed"] = not failures
        if failures:
            row["problem"] = "; ".join(f for f in dict.fromkeys(failures) if f)
        return row
