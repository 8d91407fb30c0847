"""report.md: the parity table per stage, readable in a terminal, a diff and a code review."""

from __future__ import annotations

from forgeml.parity.table import COLUMNS, cell, fmt, header, parity_table, row  # noqa: F401  (parity_table re-exported)


def render(manifest: dict) -> str:
    """The whole report.md from a manifest (so the report never says what the manifest does not)."""

    ok = manifest["ok"]
    src = manifest["source"]
    out = [f"# forgeml parity report — {'PASS' if ok else 'FAIL'}", ""]
    out.append(f"- source: `{src['ref']}` ({src['kind']}, {src.get('framework', '')}"
               + (f", route: {src['route']}" if src.get("route") else "") + ")")
    out.append(f"- source sha256: `{src['sha256']}`")
    if manifest.get("command"):
        out.append(f"- command: `{manifest['command']}`")
    if manifest.get("machine"):
        from forgeml.report.machine import machine_text

        out.append(f"- machine: {machine_text(manifest['machine'])}")
    if manifest.get("plan"):
        plan = manifest["plan"]
        out.append(f"- stage plan: {plan['reason']}; skipped: {', '.join(plan.get('skipped', [])) or 'none'}")
    if manifest.get("error"):
        out.append(f"- error: {manifest['error']}")
    for warning in manifest.get("warnings", []):
        out.append(f"- **WARNING: {warning}**")
    for st in manifest["stages"]:
        d = st.get("divergence")
        if d and d.get("found"):
            mod = f", module `{d['module']}`" + (f" ({d['module_class']})" if d.get("module_class") else "") \
                if d.get("module") else ""
            out.append(f"- first divergence in {st['name']}: node `{d['node']}` ({d['op']}){mod}")
            if d.get("conditioning", {}).get("ill_conditioned"):
                out.append(f"  - {d['evidence']}")
        elif d:
            out.append(f"- first divergence in {st['name']}: not localized ({d.get('note', '')})")
    out += ["", "## Signature", "", "| | name | shape | dtype |", "|---|---|---|---|"]
    for kind in ("inputs", "outputs"):
        for t in manifest["signature"][kind]:
            shape = "×".join(str(d) for d in t["shape"]) or "scalar"
            out.append(f"| {kind[:-1]} | {t['name']} | {shape} | {t['dtype']} |")
    out += ["", "## Parity per stage", ""]
    out += header("stage", "kind")
    for st in manifest["stages"]:
        par = st.get("parity")
        if par is None:
            msg = cell(st.get("error") or st.get("note") or "not checked")
            msg = f"**{msg}**" if "error" in st else msg
            out.append(f"| {st['name']} | {st['kind']} | – |" + " – |" * len(COLUMNS) + f" {msg} |")
            continue
        out += [row([f"{st['name']} ({par['profile']})", st["kind"]], r) for r in par["rows"]]
    profiles = {st["parity"]["profile"]: st["parity"]["tolerance"] for st in manifest["stages"] if st.get("parity")}
    if profiles:
        from forgeml.parity.tolerances import Tolerance

        out += ["", "## Tolerance profiles", ""]
        for name, tol in profiles.items():
            fields = {k: tol.get(k) for k in ("atol", "rtol", "min_cosine", "min_centered_cosine", "min_top1",
                                              "top1_on", "min_decided")}
            out.append(f"- **{name}**: {cell(Tolerance(name=name, **fields).describe())}")
        batches = next(st["parity"]["batches"] for st in manifest["stages"] if st.get("parity"))
        out.append(f"- measured on {batches} input batches (the example inputs plus seeded random batches)")
    passes = [st for st in manifest["stages"] if st["kind"] == "pass"]
    if passes:
        out += ["", "## Passes", "", "| pass | config | nodes | bytes | seconds |", "|---|---|---|---|---|"]
        for st in passes:
            ch = st.get("changes", {})
            out.append(f"| {st['name']} | `{st.get('config', {})}` | {ch.get('nodes_before')} → {ch.get('nodes_after')}"
                       f" | {ch.get('bytes_before')} → {ch.get('bytes_after')} | {st.get('seconds', 0):.2f} |")
    detailed = [st for st in passes if st.get("details")]
    if detailed:
        from forgeml.report.precision import pass_details

        out += pass_details(detailed)
    if manifest.get("artifacts"):
        out += ["", "## Artifacts", "", "| target | file | bytes | sha256 |", "|---|---|---|---|"]
        for name, a in manifest["artifacts"].items():
            out.append(f"| {name} | {a['path']} | {a['bytes']} | `{a['sha256'][:16]}…` |")
    out += ["", "## Tools", ""] + [f"- {k} {v}" for k, v in manifest.get("tools", {}).items()]
    return "\n".join(out) + "\n"
