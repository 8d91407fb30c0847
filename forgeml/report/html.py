"""report.html: the parity report a release reviewer reads in a browser, from the manifest alone.

One self-contained file: inline CSS, charts drawn as inline SVG by ``forgeml.report.svg``, no
script, no font, no image fetched from anywhere, so it opens the same offline, in a mail attachment
or a CI artifact store. Like report.md it says nothing the manifest does not.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from forgeml.manifest import LatencyRecord, Manifest, PassChanges, SourceRecord, Worst
from forgeml.report import svg
from forgeml.report.machine import machine_text
from forgeml.parity.table import COLUMNS, fmt
from forgeml.parity.sketch import sample_values

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d8dce3;padding-bottom:4px}
.verdict{border-radius:8px;padding:16px 20px;color:#fff;margin:0 0 16px}
.verdict.pass{background:#1f7a3f}.verdict.fail{background:#b3261e}
.verdict .big{font-size:30px;font-weight:700;letter-spacing:.5px}
.verdict .sub{opacity:.92}
table{border-collapse:collapse;background:#fff;margin:4px 0 8px;font-size:13px}
th,td{border:1px solid #d8dce3;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums;font-family:ui-monospace,Menlo,Consolas,monospace}
tr.ok td.v{background:#e3f4e8;color:#14532d;font-weight:600}
tr.bad td{background:#fdecea}tr.bad td.v{color:#8c1d18;font-weight:600}
tr.err td{background:#fff4e0}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.box{background:#fff;border:1px solid #d8dce3;border-left:5px solid #b3261e;border-radius:4px;padding:10px 14px;margin:8px 0}
.box.info{border-left-color:#3b6fb6}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.plot{background:#fff;border:1px solid #d8dce3;border-radius:4px;padding:6px 8px}
.plot h3{font-size:12px;margin:0 0 2px;font-weight:600}
.muted{color:#5b6475}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:4px 0}dt{color:#5b6475}dd{margin:0}
"""


def _e(v) -> str:
    return escape(str(v), quote=True)


def _table(headers: list[str], rows: list[tuple[str, list[str]]], num_from: int = 99,
           verdict: bool = True) -> str:
    """rows: (css class, already-escaped cells); the last column is the verdict unless told otherwise."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for cls, cells in rows:
        last = len(cells) - 1 if verdict else len(cells)

        def kind(i):
            return "v" if i == last else ("num" if num_from <= i < last else "")

        tds = "".join(f'<td class="{kind(i)}">{c}</td>' for i, c in enumerate(cells))
        body.append(f'<tr class="{cls}">{tds}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _bytes(n) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _latency(entry: LatencyRecord | None) -> str:
    if not entry:
        return "–"
    if entry.median_ms is None:
        return f'<span class=muted>{_e(entry.note or "–")}</span>'
    where = f", in {_e(entry.where)}" if entry.where else ""
    return f"{entry.median_ms:.3g} ms <span class=muted>(median of {entry.runs}{where})</span>"


# --- sections -----------------------------------------------------------------------------------

def _verdict(m: Manifest) -> str:
    stages = m.checked()
    failed = [st.name for st in m.stages if (st.parity and not st.parity.passed) or st.error]
    sub = (f"{len(stages)} stage(s) checked against {_e(stages[0].parity.reference)}" if stages
           else "no stage was checked")
    if failed:
        sub += " — failing: " + ", ".join(_e(f) for f in failed)
    from forgeml.report.gating import headline, verdict

    word = verdict(m)  # the exit code's verdict, under the gate the run was converted with
    return (f'<div class="verdict {"pass" if word == "PASS" else "fail"}" id="verdict"><div class="big">'
            f'{_e(headline(m))}</div><div class="sub">{_e(m.source.ref or "")} · {sub}</div></div>')


def _divergence(m: Manifest) -> str:
    out = []
    for st in m.stages:
        for note in st.notes:
            out.append(f'<div class="box info"><b>{_e(st.name)}:</b> {_e(note)}</div>')
        d = st.divergence
        if not d:
            continue
        if not d.found:
            out.append(f'<div class="box info"><b>First divergence in {_e(st.name)}:</b> not localized — '
                       f'{_e(d.note or "")}</div>')
            continue
        where = f'module <code>{_e(d.module)}</code>' if d.module else "no source module recorded"
        if d.module_class:
            where += f' ({_e(d.module_class)})'
        problem = d.metrics.problem if d.metrics else None
        parts = [f'<div class="box" id="divergence"><b>First divergence in stage {_e(st.name)}:</b> node '
                 f'<code>{_e(d.node)}</code> (op <code>{_e(d.op)}</code>), from {where}.']
        if d.source_line:
            parts.append(f'<div class="mono muted">{_e(d.source_line)}</div>')
        if d.evidence:
            parts.append(f"<div>Why this node: {_e(d.evidence)}.</div>")
        det = d.detected_at
        if det and det.node != d.node:
            parts.append(f'<div>Measured first at <code>{_e(det.node)}</code> ({_e(det.op)}, value '
                         f'<code>{_e(det.value)}</code>'
                         + (f', module <code>{_e(det.module)}</code>' if det.module else "") + ").</div>")
        at = f'at <code>{_e(d.metrics_at)}</code>: ' if d.metrics_at else ""
        parts.append(f'<div class="muted">{at}{_e(problem or "")} · compared {d.compared or 0} values '
                     f'against {_e(d.reference or "")}; last matching value: '
                     f'<code>{_e(d.last_matching_value or "none")}</code></div>')
        if d.suspects and len(d.suspects) > 1:
            sus = ", ".join(f'{_e(s.node)} ({_e(s.op)}{", " + _e(s.module) if s.module else ""})'
                            for s in d.suspects)
            parts.append(f'<div class="muted">Nodes between the last matching value and the measurement, with no '
                         f'counterpart in the reference: {sus}</div>')
        out.append("".join(parts) + "</div>")
    return "".join(out)


def _signature(m: Manifest) -> str:
    rows = []
    sig = m.signature
    for kind, tensors in (("input", sig.inputs if sig else []), ("output", sig.outputs if sig else [])):
        for t in tensors:
            shape = "×".join(str(d) for d in t.shape) or "scalar"
            rows.append(("", [_e(kind), f"<code>{_e(t.name)}</code>", _e(shape), _e(t.dtype)]))
    return "<h2>Signature</h2>" + _table(["", "name", "shape", "dtype"], rows, verdict=False) if rows else ""


def _stage_table(m: Manifest) -> str:
    return '<h2>Parity per stage</h2><div id="stages">' + stage_table(m) + "</div>"


def stage_table(manifest: Manifest | dict) -> str:
    """Every stage of the manifest as one HTML table (stage, output, metrics, seconds, verdict); also
    what a ``Conversion`` shows in a notebook."""
    m = Manifest.coerce(manifest)
    headers = ["stage", "kind", "profile", "output"] + [h for _, h in COLUMNS] + ["seconds", "verdict"]
    rows = []
    for st in m.stages:
        par = st.parity
        if par is None:
            rows.append(("err" if st.error is not None else "ok", [_e(st.name), _e(st.kind), "–", "–"]
                         + ["–"] * len(COLUMNS)
                         + [_e("" if st.seconds is None else st.seconds), _e(st.error or st.note or "not checked")]))
            continue
        for row in par.rows:
            verdict = "pass" if row.passed else "FAIL: " + (row.problem or "")
            rows.append(("ok" if row.passed else "bad",
                         [_e(st.name), _e(st.kind), _e(par.profile), f"<code>{_e(row.output)}</code>"]
                         + [_e(fmt(row.metric(k))) for k, _ in COLUMNS]
                         + [_e(f"{st.seconds or 0:.2f}"), _e(verdict)]))
    return _table(headers, rows, num_from=4)


def _variants(m: Manifest) -> str:
    targets = {st.name: st for st in m.of_kind("target") if st.parity}
    items = [(name, a, targets.get(name)) for name, a in m.artifacts.items()]
    if len(items) < 2:
        return ""
    rows, points = [], []
    for name, a, st in items:
        par = st.parity if st else None
        w = par.worst() if par else Worst()
        lat = st.latency if st else None
        acc = w.centered_cosine if w.centered_cosine is not None else w.cosine
        passed = bool(par and par.passed)
        rows.append(("ok" if passed else "bad",
                     [_e(name), f"<code>{_e(a.path)}</code>", _e(par.profile if par else "–"), _e(_bytes(a.bytes)),
                      _latency(lat), _e(fmt(w.cosine)), _e(fmt(w.centered_cosine)),
                      _e(fmt(w.top1)), _e(fmt(w.max_abs)),
                      "pass" if passed else "FAIL"]))
        if lat and lat.median_ms is not None:
            points.append(svg.Point(name, float(a.bytes), float(lat.median_ms), acc, passed))
    ref = next((st.reference_latency for st in m.of_kind("converter")), None)
    chart = svg.variants_chart(points, reference_ms=ref.median_ms if ref else None) if len(points) >= 1 else ""
    loads = [st.latency.load_1m for _, _, st in items if st and st.latency and st.latency.load_1m is not None]
    cpus = next((st.latency.cpus for _, _, st in items if st and st.latency), None)
    busy = (f" Measured with a load average of {max(loads):.1f} on {cpus} CPUs" if loads and cpus else "")
    if m.machine:
        busy += f"{' on' if busy else ' Measured on'} {machine_text(m.machine)}"
    note = ('<p class="muted">Latency: median of a few runs of each artifact on the example batch, in this process, '
            "on the machine that made the report; it ranks the variants of one run, it is not a benchmark."
            f"{_e(busy)}{'.' if busy else ''} Accuracy: the worst output's metric against the source model.</p>")
    return ('<h2>Variants side by side</h2><div id="variants">'
            + _table(["variant", "file", "profile", "size", "latency", "cosine (min)", "centered cos (min)",
                      "top-1 (min)", "max abs", "verdict"], rows)
            + f'<div class="plot">{chart}</div>' + note + "</div>")


def _plots(m: Manifest) -> str:
    blocks = []
    for st in m.checked():
        par = st.parity
        for out, sk in par.sketches.items():
            row = par.row(out)
            title = f"{st.name} · {out}"
            blocks.append(
                f'<div class="plot"><h3>{_e(title)} {"" if row is None or row.passed else "— FAIL"}</h3>'
                + svg.histogram(sk["hist"], atol=par.tolerance.atol, elements=sk.get("elements", 0))
                + svg.scatter(*sample_values(sk)) + "</div>")
    if not blocks:
        return ""
    return ("<h2>Errors, drawn</h2><p class=muted>Left: how many elements have each |candidate − reference| "
            "(log scale; dashed: the profile's atol). Right: candidate against reference for a sample of "
            "elements; on the diagonal means equal.</p><div class=grid>" + "".join(blocks) + "</div>")


def _plans(m: Manifest) -> str:
    """int8-static: which int8 each runtime's targets get, made by which stage, judged on what."""
    from forgeml.report.precision import PLAN_HEADERS, plan_rows

    rows = [("", [_e(c) for c in r]) for r in plan_rows(m)]
    return '<h2>int8 per runtime</h2><div id="plans">' + _table(PLAN_HEADERS, rows, verdict=False) + "</div>" if rows else ""


def _passes(m: Manifest) -> str:
    rows = []
    for st in m.of_kind("pass"):
        ch = st.changes or PassChanges()
        passed = st.parity.passed if st.parity else True
        rows.append(("ok" if passed else "bad",
                     [_e(st.name), f"<code>{_e(json.dumps(st.config or {}))}</code>",
                      _e("yes" if ch.modified else "no"),
                      _e(f"{ch.nodes_before} → {ch.nodes_after}"),
                      _e(f"{_bytes(ch.bytes_before)} → {_bytes(ch.bytes_after)}"),
                      _e(f"{st.seconds or 0:.2f}"),
                      "pass" if passed else "FAIL"]))
    if not rows:
        return ""
    return "<h2>Pass log</h2>" + _table(["pass", "config", "modified", "nodes", "bytes", "seconds", "parity"], rows)


def _artifacts(m: Manifest) -> str:
    lat = {st.name: st.latency for st in m.of_kind("target")}
    rows = []
    for name, a in m.artifacts.items():
        rows.append(("", [_e(name), f"<code>{_e(a.path)}</code>", _e(_bytes(a.bytes)), _latency(lat.get(name)),
                          f"<code>{_e(a.sha256)}</code>"]))
        for x in a.extra_files or []:
            rows.append(("", ["", f"<code>{_e(x.path)}</code>", _e(_bytes(x.bytes)), "",
                              f"<code>{_e(x.sha256)}</code>"]))
    errs = "".join(f'<div class="box"><b>target {_e(k)} failed:</b> {_e(v)}</div>' for k, v in m.errors.items())
    if not rows and not errs:
        return ""
    where = (f'<p class="muted" id="machine">Latency and every number above measured on: '
             f'{_e(machine_text(m.machine))}</p>' if m.machine else "")
    return ("<h2>Artifacts</h2>" + (_table(["target", "file", "size", "latency", "sha256"], rows, verdict=False) if rows else "")
            + where + errs)


def _tolerances(m: Manifest) -> str:
    checked = m.checked()
    profiles = {st.parity.profile: st.parity.tolerance for st in checked}
    if not profiles:
        return ""
    from forgeml.report.markdown import inputs_text

    items = [f"<dt>{_e(name)}</dt><dd>{_e(tol.describe(name))}</dd>" for name, tol in profiles.items()]
    items.append(f"<dt>inputs</dt><dd>{_e(inputs_text(m))}</dd>")
    return "<h2>Tolerance profiles</h2><dl>" + "".join(items) + "</dl>"


def _source(s: SourceRecord) -> str:
    return f"<code>{_e(s.ref or '')}</code> ({_e(s.kind or '')}, {_e(s.framework or '')}"


def _provenance(m: Manifest) -> str:
    src, cand = m.source, m.candidate
    items = [("source", _source(src) + (f", route: {_e(src.route)}" if src.route else "") + ")"),
             ("source sha256", f"<code>{_e(src.sha256 or '') or '–'}</code>"),
             *([("candidate", _source(cand) + f"), sha256 <code>{_e(cand.sha256 or '') or '–'}</code>")]
               if cand else []),
             ("forgeml", _e(m.forgeml_version))]
    if m.command:
        items.append(("command", f"<code>{_e(m.command)}</code>"))
    if m.opset is not None:
        items.append(("opset", _e(m.opset)))
    if m.plan:
        items.append(("stage plan", f"{_e(m.plan.reason)}; skipped: {_e(', '.join(m.plan.skipped) or 'none')}"))
    if m.quantize:
        items.append(("quantize", _e(m.quantize)))
    if m.project:
        dirty = {True: " (uncommitted changes)", False: " (clean)"}.get(m.project.dirty, "")
        items.append(("project commit", f"<code>{_e(m.project.commit)}</code>{_e(dirty)}"))
    for label, h in (("calibration data", m.calibration), ("user inputs", m.user_inputs)):
        if h:
            items.append((label, f"{h.batches} batch(es), sha256 <code>{_e(h.sha256)}</code>"))
    if m.parity_data:
        for label, h in (("example", m.parity_data.example), ("generated", m.parity_data.generated),
                         ("user", m.parity_data.user), ("held-out", m.parity_data.held_out)):
            if h:
                items.append((f"parity inputs ({label})", f"{h.batches} batch(es), sha256 <code>{_e(h.sha256)}</code>"))
    tools = ", ".join(f"{_e(k)} {_e(v)}" for k, v in m.tools.items())
    items.append(("tools", tools or "–"))
    if m.run:
        items.append(("run config", f"<code>{_e(json.dumps(m.run.to_json(), sort_keys=True))}</code>"))
    return "<h2>Provenance</h2><dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def render(manifest: Manifest | dict) -> str:
    """The whole report.html from a manifest."""
    m = Manifest.coerce(manifest)
    from forgeml.report.gating import verdict
    from forgeml.report.precision import pass_details_html, warnings_html

    title = f"forgeml parity report — {verdict(m)} — {m.source.ref or ''}"

    body = [f"<h1>{_e(title)}</h1>", _verdict(m), warnings_html(m, _e), _divergence(m), _stage_table(m), _variants(m),
            _signature(m), _plots(m), _passes(m), _plans(m), pass_details_html(m.stages, _e, _table), _artifacts(m),
            _tolerances(m), _provenance(m)]
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>"
            + "".join(body) + "</main></body></html>\n")


def notebook(manifest: Manifest | dict, out_dir: str) -> str:
    """A run as a notebook shows it: verdict, where the files are, the stage table, the machine. No
    CSS of its own (the notebook's styles apply); every value escaped."""
    m = Manifest.coerce(manifest)
    failed = ", ".join(_e(k) for k in m.errors)
    from forgeml.report.gating import headline

    head = (f"<p><b>forgeml: {_e(headline(m))}</b> — {_e(m.source.ref or '')} → "
            f"<code>{_e(out_dir)}</code>{' · targets failed: ' + failed if failed else ''}</p>")
    where = machine_text(m.machine)
    foot = f'<p style="font-size:smaller">measured on {_e(where)}; result.report() opens report.html</p>' if where else ""
    return f'<div class="forgeml-result">{head}{stage_table(m)}{foot}</div>'


def save_report(manifest: Manifest | dict, path: Path) -> Path:
    """Write the report at ``path``; .html/.htm gives HTML, anything else markdown."""
    from forgeml.fileio import write_bytes_atomic
    from forgeml.report import markdown as report_md

    text = render(manifest) if path.suffix.lower() in (".html", ".htm") else report_md.render(manifest)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, text.encode())
    return path
