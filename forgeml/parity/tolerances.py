"""Tolerance profiles: how close is close enough, chosen by the precision a stage computes in.

fp32 is judged elementwise (``|cand - ref| <= atol + rtol * |ref|`` everywhere) and by cosine.
Lower precisions are not judged by fp32 max-abs rules: fp16 by relative error and cosine, int8/int4
by cosine, centered cosine (the input-dependent part of the output) and top-1 agreement.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    name: str
    atol: float | None  # None: no elementwise rule
    rtol: float
    min_cosine: float
    min_centered_cosine: float | None = None
    min_top1: float | None = None  # only for outputs that look like class scores
    # "decided": min_top1 judges only positions whose reference top-1 lead exceeds the stage's noise
    # (the row's `top1_margin`); raw top-1 is reported beside it. Fewer than `min_decided` such
    # positions: top-1 is not judged and the row carries a warning (near-ties flip by tie-breaking).
    top1_on: str | None = None  # None: every position | "decided"
    min_decided: int | None = None

    def with_overrides(self, *, atol: float | None = None, rtol: float | None = None,
                       min_cosine: float | None = None, min_top1: float | None = None,
                       min_centered_cosine: float | None = None) -> Tolerance:
        changes = {k: v for k, v in dict(atol=atol, rtol=rtol, min_cosine=min_cosine, min_top1=min_top1,
                                         min_centered_cosine=min_centered_cosine).items() if v is not None}
        return dataclasses.replace(self, **changes) if changes else self

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def describe(self) -> str:
        parts = []
        if self.atol is not None:
            parts.append(f"|d| <= {self.atol:g} + {self.rtol:g}*|ref|")
        parts.append(f"cosine >= {self.min_cosine:g}")
        if self.min_centered_cosine is not None:
            parts.append(f"centered cosine >= {self.min_centered_cosine:g}")
        if self.min_top1 is not None and self.top1_on == "decided":
            parts.append(f"top-1 on decided positions >= {self.min_top1:g} (at least {self.min_decided or 1} "
                         "positions, else not judged)")
        elif self.min_top1 is not None:
            parts.append(f"top-1 >= {self.min_top1:g}")
        return ", ".join(parts)


# GGUF profiles judge top-1 where it says something: 16 decided positions is a quarter of the default
# 64 fixed positions; fewer, and one flip would move the fraction by more than the profile's slack.
_DECIDED = {"top1_on": "decided", "min_decided": 16}

PROFILES: dict[str, Tolerance] = {
    # fp32: the elementwise rule is the judge; top-1 is reported but near-ties may flip within atol.
    "fp32": Tolerance("fp32", atol=1e-4, rtol=1e-3, min_cosine=0.99999),
    "fp16": Tolerance("fp16", atol=None, rtol=1e-2, min_cosine=0.999, min_centered_cosine=0.99,
                      min_top1=0.98),
    "int8": Tolerance("int8", atol=None, rtol=0.1, min_cosine=0.99, min_centered_cosine=0.9,
                      min_top1=0.9),
    "int4": Tolerance("int4", atol=None, rtol=0.2, min_cosine=0.98, min_centered_cosine=0.85,
                      min_top1=0.85),
    # GGUF files run in llama.cpp (f32 KV cache) vs transformers; logits of (batch, tokens, vocab).
    # f32: elementwise, with room for ggml's f16 GELU table in gpt2 (1e-3..4e-3 at logit scale ~8).
    # Top-1 is judged on decided positions: on flat (random-weight) logits raw top-1 measures ties.
    "gguf-f32": Tolerance("gguf-f32", atol=5e-3, rtol=1e-3, min_cosine=0.99999, min_top1=0.99, **_DECIDED),
    "gguf-f16": Tolerance("gguf-f16", atol=None, rtol=1e-2, min_cosine=0.999, min_top1=0.98, **_DECIDED),
    "gguf-bf16": Tolerance("gguf-bf16", atol=None, rtol=5e-2, min_cosine=0.995, min_top1=0.95, **_DECIDED),
    "gguf-q8_0": Tolerance("gguf-q8_0", atol=None, rtol=0.1, min_cosine=0.99, min_top1=0.95, **_DECIDED),
    "gguf-q4": Tolerance("gguf-q4", atol=None, rtol=0.2, min_cosine=0.95, min_top1=0.8, **_DECIDED),
}


# Accuracy budgets of the precision passes, judged against the float model the pass starts from, on
# more inputs than the pipeline's parity check (forgeml.passes.precision.base.BudgetConfig.budget_samples).
# A pass that misses its budget keeps its costliest nodes in float until it holds (passes/fallback.py).
# They are stricter than the profiles above on top-1 (0.98: at most 1 flip in 50 samples) so that a
# quantized classifier keeps its decisions; `quantize.max_cosine_drop` / `quantize.min_top1` override both.
BUDGETS: dict[str, Tolerance] = {
    "fp16": Tolerance("fp16 budget", atol=None, rtol=1e-2, min_cosine=0.999, min_centered_cosine=0.99,
                      min_top1=0.98),
    "int8": Tolerance("int8 budget", atol=None, rtol=0.1, min_cosine=0.99, min_centered_cosine=0.95,
                      min_top1=0.98),
    "int4": Tolerance("int4 budget", atol=None, rtol=0.2, min_cosine=0.98, min_centered_cosine=0.9,
                      min_top1=0.9),
}


def profile_for(precision: str) -> Tolerance:
    try:
        return PROFILES[precision]
    except KeyError:
        raise KeyError(f"no tolerance profile for precision {precision!r}; known: {sorted(PROFILES)}") from None
