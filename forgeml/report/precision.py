"""report.md sections for passes that report details: fusions fired, precision settings, fallback steps."""

from __future__ import annotations

from forgeml.manifest import Manifest, PassDetails, StageRecord

_STEP_METRICS = ("cosine", "centered_cosine", "top1")


def _budget_parts(b, top1: str = "top-1") -> list[tuple[str, float]]:
    return [(k, v) for k, v in (("cosine", b.min_cosine), ("centered cosine", b.min_centered_cosine),
                                (top1, b.min_top1)) if v is not None]


def pass_details(stages: list[StageRecord]) -> list[str]:
    out = ["", "## Pass details", ""]
    for st in stages:
        d: PassDetails = st.details
        out.append(f"### {st.name}")
        if d.fusions is not None:
            fired = ", ".join(f"{op} ×{n}" for op, n in d.fusions.items()) or "none (no fusable pattern)"
            out.append(f"- fusions fired: {fired}")
        if d.settings:
            out.append("- settings: " + ", ".join(f"{k}={v}" for k, v in d.settings.items()))
        if d.budget is not None:
            parts = [f"{k} >= {v:g}" for k, v in _budget_parts(d.budget)]
            out.append(f"- accuracy budget vs the float model ({d.budget_batches} input batches): "
                       + ", ".join(parts))
            kept = d.kept_in_float or []
            out.append(f"- kept in float: {', '.join(f'`{k}`' for k in kept) if kept else 'none'} "
                       f"(of {d.candidates} candidate nodes)")
        steps = d.steps or []
        if len(steps) > 1:
            out += ["", "| step | nodes kept | added | cosine | centered cos | top-1 | budget |", "|---|---|---|---|---|---|---|"]
            for i, s in enumerate(steps):
                added = ", ".join(f"`{n}`" for n in s.added_nodes) or "–"
                cells = " | ".join(f"{v:.6f}" if (v := getattr(s, k)) is not None else "–" for k in _STEP_METRICS)
                out.append(f"| {i} | {s.kept} | {added} | {cells} | {'met' if s.passed else 'missed'} |")
        for w in d.warnings or []:
            out.append(f"- **{w}**")
        out.append("")
    return out


def pass_details_html(stages: list[StageRecord], esc, table) -> str:
    """The same facts for report.html; ``esc`` escapes text, ``table(headers, rows)`` renders rows."""
    parts = []
    for st in stages:
        d = st.details
        if not d:
            continue
        items = []
        if d.fusions is not None:
            fired = ", ".join(f"{op} ×{n}" for op, n in d.fusions.items()) or "none (no fusable pattern)"
            items.append(("fusions fired", esc(fired)))
        if d.settings:
            items.append(("settings", esc(", ".join(f"{k}={v}" for k, v in d.settings.items()))))
        if d.budget is not None:
            text = ", ".join(f"{k} >= {v:g}" for k, v in _budget_parts(d.budget, "top1"))
            items.append(("accuracy budget", esc(f"{text} vs the float model, {d.budget_batches} batches")))
            kept = d.kept_in_float or []
            items.append(("kept in float", (", ".join(f"<code>{esc(k)}</code>" for k in kept) or "none")
                          + esc(f" (of {d.candidates} candidate nodes)")))
        for w in d.warnings or []:
            items.append(("warning", f"<strong>{esc(w)}</strong>"))
        html = f"<h3>{esc(st.name)}</h3><dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"
        steps = d.steps or []
        if len(steps) > 1:
            rows = [("ok" if s.passed else "bad",
                     [esc(str(i)), esc(str(s.kept)),
                      ", ".join(f"<code>{esc(n)}</code>" for n in s.added_nodes) or "–",
                      *[esc(f"{v:.6f}") if (v := getattr(s, k)) is not None else "–" for k in _STEP_METRICS],
                      "met" if s.passed else "missed"]) for i, s in enumerate(steps)]
            html += table(["step", "nodes kept", "added", "cosine", "centered cos", "top-1", "budget"], rows)
        parts.append(html)
    return "<h2>Pass details</h2>" + "".join(parts) if parts else ""


def warnings_html(manifest: Manifest | dict, esc) -> str:
    return "".join(f'<p class="bad"><strong>WARNING: {esc(w)}</strong></p>'
                   for w in Manifest.coerce(manifest).warnings)
