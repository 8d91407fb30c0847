"""report.md sections for passes that report details: fusions fired, precision settings, fallback steps."""

from __future__ import annotations

from forgeml.manifest import Manifest, PassDetails, StageRecord

_STEP_METRICS = ("cosine", "centered_cosine", "top1")


def held_out_text(h) -> str:
    """The budget re-judged on batches the fallback never chose on, with the numbers it was judged by."""
    if h.skipped:
        return f"not checked ({h.skipped})"
    nums = ", ".join(f"{k.replace('_', ' ')} {v:.6f}" for k in _STEP_METRICS if (v := getattr(h, k)) is not None)
    verdict = "met" if h.passed else f"MISSED ({h.problem or ''})"
    return f"{verdict} on {h.batches} held-out batches: {nums}"


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
        if d.held_out is not None:
            out.append(f"- budget on held-out inputs: {held_out_text(d.held_out)}")
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
        if d.held_out is not None:
            items.append(("budget on held-out inputs", esc(held_out_text(d.held_out))))
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
    """Every warning the gate counts (``gating.warnings``), as the CLI prints them."""
    from forgeml.report.gating import warnings

    return "".join(f'<p class="bad"><strong>WARNING: {esc(w)}</strong></p>' for w in warnings(manifest))


def plan_text(plan) -> str:
    """A runtime's int8 plan in a few words (``QuantPlanSettings``)."""
    if plan is None:
        return "–"
    sym = lambda b: "symmetric" if b else "asymmetric"  # noqa: E731
    return (f"{plan.activation_type} {sym(plan.activation_symmetric)} activations, {plan.weight_type} "
            f"{sym(plan.weight_symmetric)} {'per-channel' if plan.per_channel else 'per-tensor'} weights"
            + (", reduce_range" if plan.reduce_range else "") + (", int32 bias Q/DQ" if plan.quantize_bias else "")
            + f" (CPU: {plan.cpu})")


PLAN_HEADERS = ["runtime", "targets", "int8 plan", "made by", "stage", "judged on"]


def plan_rows(manifest: Manifest) -> list[list[str]]:
    """One row per runtime of an int8-static run: which int8 each target gets, from which stage."""
    return [[q.runtime or "", ", ".join(q.targets), plan_text(q.plan), q.made_by or "", q.stage or "",
             q.judged_on or ""] for q in manifest.quantize_plans or []]
