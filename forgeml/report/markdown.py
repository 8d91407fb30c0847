"""report.md: the parity table per stage, readable in a terminal, a diff and a code review."""

from __future__ import annotations

from forgeml.manifest import DataHash, Manifest
from forgeml.parity.table import COLUMNS, cell, fmt, header, parity_table, row  # noqa: F401  (parity_table re-exported)


def render(manifest: Manifest | dict) -> str:
    """The whole report.md from a manifest (so the report never says what the manifest does not)."""

    from forgeml.report.gating import headline, warnings

    m = Manifest.coerce(manifest)
    src = m.source
    out = [f"# forgeml parity report — {headline(m)}", ""]
    out.append(f"- source: `{src.ref}` ({src.kind}, {src.framework or ''}"
               + (f", route: {src.route}" if src.route else "") + ")")
    out.append(f"- source sha256: `{src.sha256}`")
    if m.command:
        out.append(f"- command: `{m.command}`")
    if m.machine:
        from forgeml.report.machine import machine_text

        out.append(f"- machine: {machine_text(m.machine)}")
    if m.plan:
        out.append(f"- stage plan: {m.plan.reason}; skipped: {', '.join(m.plan.skipped) or 'none'}")
    if m.error:
        out.append(f"- error: {m.error}")
    for warning in warnings(m):  # every warning the gate counts, as the CLI prints them
        out.append(f"- **WARNING: {warning}**")
    for st in m.stages:
        d = st.divergence
        if d and d.found:
            mod = f", module `{d.module}`" + (f" ({d.module_class})" if d.module_class else "") if d.module else ""
            out.append(f"- first divergence in {st.name}: node `{d.node}` ({d.op}){mod}")
            if d.conditioning and d.conditioning.get("ill_conditioned"):
                out.append(f"  - {d.evidence}")
        elif d:
            out.append(f"- first divergence in {st.name}: not localized ({d.note or ''})")
    out += ["", "## Signature", "", "| | name | shape | dtype |", "|---|---|---|---|"]
    if m.signature:
        for kind, tensors in (("input", m.signature.inputs), ("output", m.signature.outputs)):
            for t in tensors:
                shape = "×".join(str(d) for d in t.shape) or "scalar"
                out.append(f"| {kind} | {t.name} | {shape} | {t.dtype} |")
    out += ["", "## Parity per stage", ""]
    out += header("stage", "kind")
    for st in m.stages:
        par = st.parity
        if par is None:
            msg = cell(st.error or st.note or "not checked")
            msg = f"**{msg}**" if st.error is not None else msg
            out.append(f"| {st.name} | {st.kind} | – |" + " – |" * len(COLUMNS) + f" {msg} |")
            continue
        out += [row([f"{st.name} ({par.profile})", st.kind], r) for r in par.rows]
    notes = [(st.name, n) for st in m.stages for n in st.notes]
    if notes:
        out += [""] + [f"- {name}: {cell(n)}" for name, n in notes]
    if m.quantize_plans:
        from forgeml.report.precision import PLAN_HEADERS, plan_rows

        out += ["", "## int8 per runtime", "", "| " + " | ".join(PLAN_HEADERS) + " |", "|" + "---|" * len(PLAN_HEADERS)]
        out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in plan_rows(m)]
    checked = m.checked()
    gen = [(st.name, r) for st in checked for r in st.parity.rows if r.tokens_matched is not None]
    if gen:  # generation parity of a KV-cache decoder: where the greedy tokens first part
        out += ["", "## Generation (greedy tokens vs the source's generate)", "",
                "| stage | row | tokens matched before divergence | first divergence |", "|---|---|---|---|"]
        out += [f"| {name} | {cell(r.output)} | {r.tokens_matched} | {cell(r.first_divergence or 'none')} |"
                for name, r in gen]
    profiles = {st.parity.profile: st.parity.tolerance for st in checked}
    if profiles:
        out += ["", "## Tolerance profiles", ""]
        for name, tol in profiles.items():
            out.append(f"- **{name}**: {cell(tol.describe(name))}")
        out.append(f"- measured on {inputs_text(m)}")
    passes = m.of_kind("pass")
    if passes:
        out += ["", "## Passes", "", "| pass | config | nodes | bytes | seconds |", "|---|---|---|---|---|"]
        for st in passes:
            ch = st.changes
            nodes = f"{ch.nodes_before} → {ch.nodes_after}" if ch else "None → None"
            size = f"{ch.bytes_before} → {ch.bytes_after}" if ch else "None → None"
            out.append(f"| {st.name} | `{st.config or {}}` | {nodes} | {size} | {st.seconds or 0:.2f} |")
    detailed = [st for st in passes if st.details]
    if detailed:
        from forgeml.report.precision import pass_details

        out += pass_details(detailed)
    if m.artifacts:
        out += ["", "## Artifacts", "", "| target | file | bytes | sha256 |", "|---|---|---|---|"]
        for name, a in m.artifacts.items():
            out.append(f"| {name} | {a.path} | {a.bytes} | `{a.sha256[:16]}…` |")
    prov = provenance_lines(m)
    if prov:
        out += ["", "## Provenance", ""] + [f"- {k}: {v}" for k, v in prov]
    out += ["", "## Tools", ""] + [f"- {k} {v}" for k, v in m.tools.items()]
    return "\n".join(out) + "\n"


def inputs_text(m: Manifest) -> str:
    """What the stages were measured on: batches per profile, and which of them were held out."""
    per: dict[str, int] = {}
    for st in m.checked():
        per.setdefault(st.parity.profile, st.parity.batches or 0)
    held = m.parity_data.held_out if m.parity_data else None
    counts = ", ".join(f"{name}: {n}" for name, n in per.items())
    text = (f"input batches per profile ({counts}): the example inputs plus seeded random batches"
            + (" and the user's" if m.user_inputs else ""))
    if held:
        text += (f"; fp16/int8/int4 stages also on {held.batches} held-out batches (seeds no precision pass "
                 "draws from), the statistics they are judged by need that many samples")
    return text


def _hash(h: DataHash) -> str:
    return f"{h.batches} batch(es), sha256 `{h.sha256}`"


def provenance_lines(m: Manifest) -> list[tuple[str, str]]:
    """(label, markdown) pairs: the calling project's commit and the data the run saw, by hash."""
    out = []
    if m.project:
        dirty = {True: " (uncommitted changes)", False: " (clean)"}.get(m.project.dirty, "")
        out.append(("project commit", f"`{m.project.commit}`{dirty}"))
    if m.calibration:
        out.append(("calibration data", _hash(m.calibration)))
    if m.user_inputs:
        out.append(("user inputs", _hash(m.user_inputs)))
    if m.parity_data:
        for label, h in (("example", m.parity_data.example), ("generated", m.parity_data.generated),
                         ("user", m.parity_data.user), ("held-out", m.parity_data.held_out)):
            if h:
                out.append((f"parity inputs ({label})", _hash(h)))
    return out
