"""Tiny inline-SVG charts for report.html: an error histogram, a scatter, the variants chart.

Written here rather than with a plotting library so the report needs nothing beyond forgeml's core
and stays one self-contained file: every chart is a few dozen SVG elements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

W, H = 270, 170
PAD_L, PAD_R, PAD_T, PAD_B = 44, 10, 10, 30


def _svg(body: str, w: int = W, h: int = H, label: str = "") -> str:
    return (f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
            f'role="img" aria-label="{escape(label)}" font-family="sans-serif" font-size="10">{body}</svg>')


def _text(x, y, s, anchor="middle", cls="") -> str:
    fill = ' fill="#5b6475"' if cls == "muted" else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{fill}>{escape(str(s))}</text>'


def _axes(w: int, h: int) -> str:
    x0, y0, x1, y1 = PAD_L, h - PAD_B, w - PAD_R, PAD_T
    return (f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#8a93a5"/>'
            f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#8a93a5"/>')


def _nice(v: float) -> str:
    if v == 0:
        return "0"
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.1e}"


def histogram(hist: dict, *, atol: float | None = None, elements: int = 0) -> str:
    """Bars of element counts per log10 |error| bin; the profile's atol as a dashed line."""
    counts, lo, step, zeros = hist["counts"], hist["log10_lo"], hist["step"], hist.get("zeros", 0)
    label = "error histogram"
    if not any(counts):
        return _svg(_axes(W, H) + _text(W / 2, H / 2, f"all {elements} elements exactly equal"), label=label)
    # Widen the occupied bins by one each side, and far enough to show where atol falls.
    lo -= step
    counts = [0] + list(counts) + [0]
    if atol:
        k = math.floor((math.log10(atol) - lo) / step)
        if k < 0:
            counts, lo = [0] * (-k + 1) + counts, lo - (-k + 1) * step
        elif k >= len(counts):
            counts = counts + [0] * (k - len(counts) + 2)
    a = 0
    span = counts
    top = max(span) or 1
    x0, y0, pw, ph = PAD_L, H - PAD_B, W - PAD_L - PAD_R, H - PAD_T - PAD_B
    bw = pw / len(span)
    parts = [_axes(W, H)]
    for i, c in enumerate(span):
        if c:
            bh = max(ph * math.log1p(c) / math.log1p(top), 1.0)
            parts.append(f'<rect x="{x0 + i * bw + 0.5:.1f}" y="{y0 - bh:.1f}" width="{max(bw - 1, 1):.1f}" '
                         f'height="{bh:.1f}" fill="#3b6fb6"><title>1e{lo + (a + i) * step:g}..1e'
                         f'{lo + (a + i + 1) * step:g}: {c}</title></rect>')
    for i in range(0, len(span) + 1, max(1, len(span) // 4)):
        parts.append(_text(x0 + i * bw, y0 + 12, f"1e{lo + (a + i) * step:g}", cls="muted"))
    if atol:
        x = x0 + (math.log10(atol) - (lo + a * step)) / step * bw
        parts.append(f'<line x1="{x:.1f}" y1="{PAD_T}" x2="{x:.1f}" y2="{y0}" stroke="#b3261e" '
                     f'stroke-dasharray="4 3"/>')
    parts.append(_text(x0 - 4, PAD_T + 8, f"{top}", anchor="end", cls="muted"))
    parts.append(_text(x0 + pw / 2, H - 4, "|cand − ref| (log count)" + (f"; {zeros} exact" if zeros else ""),
                       cls="muted"))
    return _svg("".join(parts), label=label)


def scatter(ref: list[float], cand: list[float]) -> str:
    """Candidate against reference for the sampled elements, with the y = x diagonal."""
    label = "reference vs candidate"
    if not ref:
        return _svg(_axes(W, H) + _text(W / 2, H / 2, "no sample"), label=label)
    lo, hi = min(min(ref), min(cand)), max(max(ref), max(cand))
    if hi == lo:
        hi, lo = hi + 1, lo - 1
    x0, y0, pw, ph = PAD_L, H - PAD_B, W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def px(v):
        return x0 + (v - lo) / (hi - lo) * pw

    def py(v):
        return y0 - (v - lo) / (hi - lo) * ph

    parts = [_axes(W, H), f'<line x1="{px(lo):.1f}" y1="{py(lo):.1f}" x2="{px(hi):.1f}" y2="{py(hi):.1f}" '
                          f'stroke="#b9c0cc" stroke-dasharray="3 3"/>']
    for r, c in zip(ref, cand):
        parts.append(f'<circle cx="{px(r):.1f}" cy="{py(c):.1f}" r="2" fill="#1f7a3f" fill-opacity=".6"/>')
    parts += [_text(x0, y0 + 12, _nice(lo), cls="muted"), _text(x0 + pw, y0 + 12, _nice(hi), cls="muted"),
              _text(x0 - 4, y0, _nice(lo), anchor="end", cls="muted"),
              _text(x0 - 4, PAD_T + 8, _nice(hi), anchor="end", cls="muted"),
              _text(x0 + pw / 2, H - 4, "reference (x) vs candidate (y)", cls="muted")]
    return _svg("".join(parts), label=label)


@dataclass
class Point:
    name: str
    size: float  # bytes
    latency_ms: float
    accuracy: float | None  # the worst output's (centered) cosine
    passed: bool


def variants_chart(points: list[Point], *, reference_ms: float | None = None) -> str:
    """Size (x, log) against latency (y); each point labelled with its accuracy, coloured by verdict."""
    w, h = 560, 260
    pad_l, pad_b, pad_t, pad_r = 60, 34, 14, 130
    if not points:
        return ""
    xs = [math.log10(max(p.size, 1)) for p in points]
    ys = [p.latency_ms for p in points] + ([reference_ms] if reference_ms else [])
    xlo, xhi = min(xs) - 0.15, max(xs) + 0.15
    yhi = max(ys) * 1.15 or 1.0
    pw, ph = w - pad_l - pad_r, h - pad_t - pad_b

    def px(v):
        return pad_l + (v - xlo) / (xhi - xlo) * pw

    def py(v):
        return h - pad_b - v / yhi * ph

    parts = [f'<line x1="{pad_l}" y1="{h - pad_b}" x2="{w - pad_r}" y2="{h - pad_b}" stroke="#8a93a5"/>',
             f'<line x1="{pad_l}" y1="{h - pad_b}" x2="{pad_l}" y2="{pad_t}" stroke="#8a93a5"/>']
    if reference_ms:
        parts.append(f'<line x1="{pad_l}" y1="{py(reference_ms):.1f}" x2="{w - pad_r}" y2="{py(reference_ms):.1f}" '
                     f'stroke="#b9c0cc" stroke-dasharray="4 3"/>')
    placed: list[tuple[float, float]] = []  # label anchors already drawn, so later ones dodge them
    if reference_ms:
        sx, sy = w - pad_r + 4, py(reference_ms) + 3
        parts.append(_text(sx, sy, f"source {reference_ms:.3g} ms", anchor="start", cls="muted"))
        placed.append((sx, sy))
    for p, x in zip(points, xs):
        lx, ly = px(x) + 9, py(p.latency_ms) - 6
        while any(abs(ly - qy) < 11 and lx < qx + 120 and qx < lx + 120 for qx, qy in placed):
            ly -= 11  # points that (nearly) coincide get their labels stacked, not overprinted
        placed.append((lx, ly))
        colour = "#1f7a3f" if p.passed else "#b3261e"
        acc = "–" if p.accuracy is None else f"{p.accuracy:.4f}"
        parts.append(f'<circle cx="{px(x):.1f}" cy="{py(p.latency_ms):.1f}" r="6" fill="{colour}"/>')
        parts.append(_text(lx, ly, f"{p.name} (acc {acc})", anchor="start"))
    for v in sorted({round(xlo + 0.15, 2), round(xhi - 0.15, 2)}):
        parts.append(_text(px(v), h - pad_b + 13, _size(10 ** v), cls="muted"))
    parts.append(_text(pad_l - 4, pad_t + 8, f"{yhi:.3g} ms", anchor="end", cls="muted"))
    parts.append(_text(pad_l - 4, h - pad_b, "0", anchor="end", cls="muted"))
    parts.append(_text(pad_l + pw / 2, h - 6, "size (log) → ; latency ↑ ; label: worst-output accuracy (cosine)",
                       cls="muted"))
    return _svg("".join(parts), w, h, label="variants: size vs latency vs accuracy")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.0f}"
