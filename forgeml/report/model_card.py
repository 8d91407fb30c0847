"""``model_card.md``: the package's card for the people who deploy it — intended runtimes, signature,
variants with size / latency / parity, verdicts, provenance and known limits. Every line comes from
the manifest and signature record; a field the run did not measure is left out, never guessed.
"""

from __future__ import annotations

from forgeml.manifest import Manifest, SignatureRecord
from forgeml.parity.table import fmt


def render_card(manifest: Manifest | dict, signature: SignatureRecord | dict) -> str:
    """``signature``: the signature.json record (``report.signature.signature_record``)."""
    from forgeml.report.gating import headline

    m = Manifest.coerce(manifest)
    src = m.source
    out = [f"# Model card: `{src.ref}`", "",
           f"Converted by forgeml {m.forgeml_version}; overall parity verdict: "
           f"**{headline(m)}**.", ""]
    targets = m.of_kind("target")
    out += ["## Intended runtimes", ""]
    for s in targets:
        if s.error is not None:
            out.append(f"- {s.name}: not built ({s.error})")
        else:
            out.append(f"- {s.name}: `{s.artifact or ''}` run with {s.runtime or ''}")
    out += ["", "## Signature", "", "| | name | shape | dtype |", "|---|---|---|---|"]
    sig = SignatureRecord.from_json(signature)
    for kind, tensors in (("input", sig.inputs), ("output", sig.outputs)):
        for t in tensors:
            shape = "×".join("?" if d is None else str(d) for d in t.shape) or "scalar"
            out.append(f"| {kind} | {t.name} | {shape} | {t.dtype} |")
    if sig.labels is not None:
        out += ["", f"Labels ({len(sig.labels)}): " + ", ".join(f"`{x}`" for x in sig.labels)]
    arts = m.artifacts
    out += ["", "## Variants", "", "| target | precision profile | bytes | latency median ms | parity | worst max abs "
            "| worst cosine |", "|---|---|---|---|---|---|---|"]
    for s in targets:
        if s.name not in arts or s.parity is None:
            continue
        par, worst = s.parity, s.parity.worst()
        lat = s.latency.median_ms if s.latency else None
        max_abs, cos = worst.max_abs, worst.cosine
        out.append(f"| {s.name} | {par.profile or ''} | {arts[s.name].bytes:,} | "
                   f"{fmt(lat) if lat is not None else '–'} | {'pass' if par.passed else 'FAIL'} | "
                   f"{fmt(max_abs) if max_abs is not None else '–'} | {fmt(cos) if cos is not None else '–'} |")
    out += ["", "Parity is measured against the source model "
            f"({src.framework or ''}) on the run's parity inputs; see report.md for every stage.", "",
            "## Provenance", "", f"- source: `{src.ref}` ({src.kind}), sha256 `{src.sha256}`"]
    if src.route:
        out.append(f"- export route: {src.route}")
    if m.command:
        out.append(f"- command: `{m.command}`")
    if m.project:
        out.append(f"- project commit: `{m.project.commit}`" + (" (uncommitted changes)" if m.project.dirty else ""))
    for name, a in arts.items():
        out.append(f"- {name}: `{a.path}` sha256 `{a.sha256}`")
    limits = [f"{k}: {v}" for k, v in m.errors.items()] + list(m.warnings)
    limits += [f"{s.name}: {s.metadata_note()}" for s in targets if s.metadata_note()]
    out += ["", "## Known limits", ""] + ([f"- {x}" for x in limits] or ["- none recorded by this run"])
    return "\n".join(out) + "\n"
