"""report.md sections for passes that report details: fusions fired, precision settings, fallback steps."""

from __future__ import annotations


def pass_details(stages: list[dict]) -> list[str]:
    out = ["", "## Pass details", ""]
    for st in stages:
        d = st["details"]
        out.append(f"### {st['name']}")
        if "fusions" in d:
            fired = ", ".join(f"{op} ×{n}" for op, n in d["fusions"].items()) or "none (no fusable pattern)"
            out.append(f"- fusions fired: {fired}")
        if d.get("settings"):
            out.append("- settings: " + ", ".join(f"{k}={v}" for k, v in d["settings"].items()))
        if "budget" in d:
            b = d["budget"]
            parts = [f"cosine >= {b['min_cosine']:g}"]
            if b.get("min_centered_cosine") is not None:
                parts.append(f"centered cosine >= {b['min_centered_cosine']:g}")
            if b.get("min_top1") is not None:
                parts.append(f"top-1 >= {b['min_top1']:g}")
            out.append(f"- accuracy budget vs the float model ({d.get('budget_batches')} input batches): "
                       + ", ".join(parts))
            kept = d.get("kept_in_float") or []
            out.append(f"- kept in float: {', '.join(f'`{k}`' for k in kept) if kept else 'none'} "
                       f"(of {d.get('candidates')} candidate nodes)")
        steps = d.get("steps") or []
        if len(steps) > 1:
            out += ["", "| step | nodes kept | added | cosine | centered cos | top-1 | budget |", "|---|---|---|---|---|---|---|"]
            for i, s in enumerate(steps):
                added = ", ".join(f"`{n}`" for n in s.get("added_nodes", [])) or "–"
                cells = " | ".join(f"{s[k]:.6f}" if k in s else "–" for k in ("cosine", "centered_cosine", "top1"))
                out.append(f"| {i} | {s['kept']} | {added} | {cells} | {'met' if s['passed'] else 'missed'} |")
        for w in d.get("warnings", []):
            out.append(f"- **{w}**")
        out.append("")
    return out


def pass_details_html(stages: list[dict], esc, table) -> str:
    """The same facts for report.html; ``esc`` escapes text, ``table(headers, rows)`` renders rows."""
    parts = []
    for st in stages:
        d = st.get("details")
        if not d:
            continue
        items = []
        if "fusions" in d:
            fired = ", ".join(f"{op} ×{n}" for op, n in d["fusions"].items()) or "none (no fusable pattern)"
            items.append(("fusions fired", esc(fired)))
        if d.get("settings"):
            items.append(("settings", esc(", ".join(f"{k}={v}" for k, v in d["settings"].items()))))
        if "budget" in d:
            b = d["budget"]
            text = ", ".join(f"{k.removeprefix('min_').replace('_', ' ')} >= {b[k]:g}"
                             for k in ("min_cosine", "min_centered_cosine", "min_top1") if b.get(k) is not None)
            items.append(("accuracy budget", esc(f"{text} vs the float model, {d.get('budget_batches')} batches")))
            kept = d.get("kept_in_float") or []
            items.append(("kept in float", (", ".join(f"<code>{esc(k)}</code>" for k in kept) or "none")
                          + esc(f" (of {d.get('candidates')} candidate nodes)")))
        for w in d.get("warnings", []):
            items.append(("warning", f"<strong>{esc(w)}</strong>"))
        html = f"<h3>{esc(st['name'])}</h3><dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"
        steps = d.get("steps") or []
        if len(steps) > 1:
            rows = [("ok" if s["passed"] else "bad",
                     [esc(str(i)), esc(str(s["kept"])),
                      ", ".join(f"<code>{esc(n)}</code>" for n in s.get("added_nodes", [])) or "–",
                      *[esc(f"{s[k]:.6f}") if k in s else "–" for k in ("cosine", "centered_cosine", "top1")],
                      "met" if s["passed"] else "missed"]) for i, s in enumerate(steps)]
            html += table(["step", "nodes kept", "added", "cosine", "centered cos", "top-1", "budget"], rows)
        parts.append(html)
    return "<h2>Pass details</h2>" + "".join(parts) if parts else ""


def warnings_html(manifest: dict, esc) -> str:
    return "".join(f'<p class="bad"><strong>WARNING: {esc(w)}</strong></p>' for w in manifest.get("warnings", []))
