"""``model_card.md``: the package's card for the people who deploy it — intended runtimes, signature,
variants with size / latency / parity, verdicts, provenance and known limits. Every line comes from
the manifest and signature record; a field the run did not measure is left out, never guessed.
"""

from __future__ import annotations

from forgeml.parity.table import fmt


def render_card(manifest: dict, signature: dict) -> str:
    src = manifest["source"]
    out = [f"# Model card: `{src['ref']}`", "",
           f"Converted by forgeml {manifest.get('forgeml_version', '')}; overall parity verdict: "
           f"**{'PASS' if manifest.get('ok') else 'FAIL'}**.", ""]
    targets = [s for s in manifest.get("stages", []) if s.get("kind") == "target"]
    out += ["## Intended runtimes", ""]
    for s in targets:
        if "error" in s:
            out.append(f"- {s['name']}: not built ({s['error']})")
        else:
            out.append(f"- {s['name']}: `{s.get('artifact', '')}` run with {s.get('runtime', '')}")
    out += ["", "## Signature", "", "| | name | shape | dtype |", "|---|---|---|---|"]
    for kind in ("inputs", "outputs"):
        for t in signature.get(kind, []):
            shape = "×".join("?" if d is None else str(d) for d in t["shape"]) or "scalar"
            out.append(f"| {kind[:-1]} | {t['name']} | {shape} | {t['dtype']} |")
    if signature.get("labels") is not None:
        out += ["", f"Labels ({len(signature['labels'])}): " + ", ".join(f"`{x}`" for x in signature["labels"])]
    arts = manifest.get("artifacts", {})
    out += ["", "## Variants", "", "| target | precision profile | bytes | latency median ms | parity | worst max abs "
            "| worst cosine |", "|---|---|---|---|---|---|---|"]
    for s in targets:
        if s["name"] not in arts or "parity" not in s:
            continue
        par, rows = s["parity"], s["parity"].get("rows", [])
        lat = (s.get("latency") or {}).get("median_ms")
        max_abs = max((r["max_abs"] for r in rows if r.get("max_abs") is not None), default=None)
        cos = min((r["cosine"] for r in rows if r.get("cosine") is not None), default=None)
        out.append(f"| {s['name']} | {par.get('profile', '')} | {arts[s['name']]['bytes']:,} | "
                   f"{fmt(lat) if lat is not None else '–'} | {'pass' if par.get('passed') else 'FAIL'} | "
                   f"{fmt(max_abs) if max_abs is not None else '–'} | {fmt(cos) if cos is not None else '–'} |")
    out += ["", "Parity is measured against the source model "
            f"({src.get('framework', '')}) on the run's parity inputs; see report.md for every stage.", "",
            "## Provenance", "", f"- source: `{src['ref']}` ({src['kind']}), sha256 `{src['sha256']}`"]
    if src.get("route"):
        out.append(f"- export route: {src['route']}")
    if manifest.get("command"):
        out.append(f"- command: `{manifest['command']}`")
    for name, a in arts.items():
        out.append(f"- {name}: `{a['path']}` sha256 `{a['sha256']}`")
    limits = [f"{k}: {v}" for k, v in (manifest.get("errors") or {}).items()] + list(manifest.get("warnings", []))
    limits += [f"{s['name']}: {s['metadata']['note']}" for s in targets if (s.get("metadata") or {}).get("note")]
    out += ["", "## Known limits", ""] + ([f"- {x}" for x in limits] or ["- none recorded by this run"])
    return "\n".join(out) + "\n"
