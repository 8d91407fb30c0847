"""``forgeml report diff OLD NEW``: what changed between two releases' manifests.

Stages are matched by name, outputs by name. It reports the verdict, every metric that moved, sizes,
hashes and latency per artifact, passes added/removed/reconfigured, and tool versions.
"""

from __future__ import annotations

import json

from forgeml.manifest import Manifest, ParityRecord, SignatureRecord
from forgeml.parity.measure import ParityRow
from forgeml.records import Record

_METRICS = ("max_abs", "max_rel", "mean_abs", "cosine", "centered_cosine", "top1", "exact_match")


def _changed(a, b) -> bool:
    if a is None or b is None:
        return a != b
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) > 1e-12 * max(1.0, abs(a), abs(b))
    return a != b


def _json(v):
    return v.to_json() if isinstance(v, Record) else v


def diff(old: Manifest | dict, new: Manifest | dict) -> dict:
    old, new = Manifest.coerce(old), Manifest.coerce(new)
    out: dict = {"verdict": {"old": "PASS" if old.ok else "FAIL", "new": "PASS" if new.ok else "FAIL"},
                 "source": {}, "stages": [], "artifacts": [], "passes": [], "tools": []}
    for k in ("ref", "sha256", "framework", "route"):
        a, b = getattr(old.source, k), getattr(new.source, k)
        if a != b:
            out["source"][k] = {"old": a, "new": b}
    o_st = {s.name: s for s in old.stages}
    n_st = {s.name: s for s in new.stages}
    for name in list(dict.fromkeys([*o_st, *n_st])):
        a, b = o_st.get(name), n_st.get(name)
        if a is None or b is None:
            out["stages"].append({"stage": name, "change": "added" if a is None else "removed"})
            continue
        ap, bp = a.parity or ParityRecord(), b.parity or ParityRecord()
        for r in bp.rows:
            ra = ap.row(r.output) or ParityRow()
            moved = {m: {"old": ra.metric(m), "new": r.metric(m)} for m in _METRICS
                     if _changed(ra.metric(m), r.metric(m))}
            if moved or ra.passed != r.passed or ap.profile != bp.profile:
                out["stages"].append({"stage": name, "output": r.output,
                                      "passed": {"old": ra.passed, "new": r.passed},
                                      "profile": {"old": ap.profile, "new": bp.profile},
                                      "metrics": moved})
        la = a.latency.median_ms if a.latency else None
        lb = b.latency.median_ms if b.latency else None
        if la is not None or lb is not None:
            out["stages"].append({"stage": name, "latency_ms": {"old": la, "new": lb}})
    o_art, n_art = old.artifacts, new.artifacts
    for name in list(dict.fromkeys([*o_art, *n_art])):
        a, b = o_art.get(name), n_art.get(name)
        if a is None or b is None:
            out["artifacts"].append({"target": name, "change": "added" if a is None else "removed"})
            continue
        out["artifacts"].append({"target": name, "bytes": {"old": a.bytes, "new": b.bytes},
                                 "identical": a.sha256 == b.sha256,
                                 "sha256": {"old": a.sha256, "new": b.sha256}})
    o_p = [(s.name, s.config) for s in old.of_kind("pass")]
    n_p = [(s.name, s.config) for s in new.of_kind("pass")]
    o_names, n_names = [p for p, _ in o_p], [p for p, _ in n_p]
    for p in n_names:
        if p not in o_names:
            out["passes"].append({"pass": p, "change": "added"})
    for p in o_names:
        if p not in n_names:
            out["passes"].append({"pass": p, "change": "removed"})
    oc, nc = dict(o_p), dict(n_p)
    for p in n_names:
        if p in oc and oc[p] != nc[p]:
            out["passes"].append({"pass": p, "change": "config", "old": oc[p], "new": nc[p]})
    if o_names != n_names and set(o_names) == set(n_names):
        out["passes"].append({"change": "order", "old": o_names, "new": n_names})
    ot, nt = old.tools, new.tools
    for k in sorted(set(ot) | set(nt)):
        if ot.get(k) != nt.get(k):
            out["tools"].append({"tool": k, "old": ot.get(k), "new": nt.get(k)})
    for k in ("forgeml_version", "opset", "quantize", "calibration"):
        a, b = _json(getattr(old, k)), _json(getattr(new, k))
        if a != b:
            out.setdefault("other", {})[k] = {"old": a, "new": b}
    return out


def _f(v) -> str:
    from forgeml.parity.table import fmt

    return fmt(v)


def render_md(d: dict, old_name: str = "OLD", new_name: str = "NEW") -> str:
    v = d["verdict"]
    lines = [f"# forgeml report diff: {old_name} → {new_name}", "",
             f"- verdict: {v['old']} → {v['new']}" + ("" if v["old"] == v["new"] else "  **(changed)**")]
    for k, c in d["source"].items():
        lines.append(f"- source {k}: `{c['old']}` → `{c['new']}`")
    for k, c in (d.get("other") or {}).items():
        lines.append(f"- {k}: `{json.dumps(c['old'])}` → `{json.dumps(c['new'])}`")
    metric_rows = [s for s in d["stages"] if "output" in s]
    if metric_rows:
        lines += ["", "## Metrics that moved", "", "| stage | output | verdict | metric | old | new |",
                  "|---|---|---|---|---|---|"]
        for s in metric_rows:
            verdict = (f"{'pass' if s['passed']['old'] else 'FAIL'} → {'pass' if s['passed']['new'] else 'FAIL'}")
            if not s["metrics"]:
                lines.append(f"| {s['stage']} | {s['output']} | {verdict} | – | – | – |")
            for m, c in s["metrics"].items():
                lines.append(f"| {s['stage']} | {s['output']} | {verdict} | {m} | {_f(c['old'])} | {_f(c['new'])} |")
    added = [s for s in d["stages"] if "change" in s]
    if added:
        lines += ["", "## Stages added or removed", ""] + [f"- {s['stage']}: {s['change']}" for s in added]
    if d["artifacts"]:
        lines += ["", "## Artifacts", "", "| target | bytes | identical | latency (median) |", "|---|---|---|---|"]
        lat = {s["stage"]: s["latency_ms"] for s in d["stages"] if "latency_ms" in s}
        for a in d["artifacts"]:
            if "change" in a:
                lines.append(f"| {a['target']} | {a['change']} | | |")
                continue
            l_ = lat.get(a["target"], {})
            lt = f"{_f(l_.get('old'))} → {_f(l_.get('new'))} ms" if l_ else "–"
            lines.append(f"| {a['target']} | {a['bytes']['old']} → {a['bytes']['new']} | "
                         f"{'yes' if a['identical'] else 'no'} | {lt} |")
    if d["passes"]:
        lines += ["", "## Passes", ""]
        for p in d["passes"]:
            if p["change"] == "config":
                lines.append(f"- {p['pass']}: config `{json.dumps(p['old'])}` → `{json.dumps(p['new'])}`")
            elif p["change"] == "order":
                lines.append(f"- order: {', '.join(p['old'])} → {', '.join(p['new'])}")
            else:
                lines.append(f"- {p['pass']}: {p['change']}")
    if d["tools"]:
        lines += ["", "## Tools", ""] + [f"- {t['tool']}: {t['old']} → {t['new']}" for t in d["tools"]]
    return "\n".join(lines) + "\n"


# --- the semver verdict: can NEW replace OLD? ----------------------------------------------------------

# Exit codes of `forgeml report diff`, for a CI gate (README "Reports, comparisons and CI gating").
EXIT = {"PATCH": 0, "NEW_FAILS": 1, "MINOR": 3, "MAJOR": 4}


def contract_changes(old: SignatureRecord | dict, new: SignatureRecord | dict) -> list[str]:
    """What breaks a caller between two signature records (signature.json, or a manifest's
    ``signature``): an input/output added, removed or renamed, a dtype or rank changed, the label set
    changed. Each is one readable line; any makes the release MAJOR."""
    old, new = SignatureRecord.from_json(old or {}), SignatureRecord.from_json(new or {})
    out: list[str] = []
    for kind in ("inputs", "outputs"):
        a = {t.name: t for t in getattr(old, kind)}
        b = {t.name: t for t in getattr(new, kind)}
        gone, added = [n for n in a if n not in b], [n for n in b if n not in a]
        if len(gone) == len(added) and gone:
            out += [f"{kind[:-1]} {g!r} renamed to {n!r}" for g, n in zip(gone, added)]
        else:
            out += [f"{kind[:-1]} {n!r} removed" for n in gone] + [f"{kind[:-1]} {n!r} added" for n in added]
        for n in a.keys() & b.keys():
            if a[n].dtype != b[n].dtype:
                out.append(f"{kind[:-1]} {n!r}: dtype {a[n].dtype} -> {b[n].dtype}")
            if len(a[n].shape) != len(b[n].shape):
                out.append(f"{kind[:-1]} {n!r}: rank {len(a[n].shape)} -> {len(b[n].shape)}")
    if old.labels != new.labels and (old.labels is not None or new.labels is not None):
        out.append(f"labels {old.labels} -> {new.labels}")
    return sorted(out)


def semver(contract: list[str], reruns: list[dict]) -> str:
    """MAJOR: the contract changed. MINOR: same contract, some artifact's outputs on the shared inputs
    moved beyond its parity profile. PATCH: everything within tolerance."""
    if contract:
        return "MAJOR"
    if any(r.get("passed") is False for r in reruns):
        return "MINOR"
    return "PATCH"


def render_release(d: dict) -> str:
    """The verdict block printed above the diff's tables."""
    lines = [f"## Release verdict: {d['semver']}", ""]
    lines += [f"- contract: {c}" for c in d["contract"]] or ["- contract: unchanged"]
    for r in d["reruns"]:
        if r.get("passed") is None:
            lines.append(f"- {r['target']}: outputs not rerun ({r['why']})")
        else:
            worst = ", ".join(f"{k} {_f(v)}" for k, v in r["worst"].items())
            lines.append(f"- {r['target']}: outputs on {r['batches']} shared input batches "
                         f"{'within' if r['passed'] else 'BEYOND'} the {r['profile']} profile ({worst})")
    return "\n".join(lines) + "\n\n"
