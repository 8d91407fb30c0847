"""The batch's summaries in OUT: ``summary.json`` (for scripts), ``summary.md`` and ``summary.html`` (one
row per job: verdict, sizes, latency, node, a link to the job's own report) and ``junit.xml`` (one
testcase per job, so CI systems show failures without a plugin). All are written from the records
alone, atomically; the HTML is self-contained and escapes every value it shows.
"""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from pathlib import Path

from forgeml.batch.record import VERDICTS, JobRecord
from forgeml.fileio import write_bytes_atomic, write_json_atomic

FILES = ("summary.json", "summary.md", "summary.html", "junit.xml")


def exit_code(records: list[JobRecord]) -> int:
    """0 every job passed; 2 a job could not be converted or scheduled (as ``forgeml convert`` exits 2 for
    a target it could not build); else 1 when any job failed parity or was lost with its worker."""
    verdicts = {r.verdict for r in records}
    if verdicts & {"ERROR", "UNSCHEDULABLE"}:
        return 2
    return 1 if verdicts - {"PASS"} else 0


def counts(records: list[JobRecord]) -> dict[str, int]:
    return {v: sum(r.verdict == v for r in records) for v in VERDICTS}


def write(out: Path, records: list[JobRecord], meta: dict) -> dict:
    """Write the four files; returns summary.json's content."""
    doc = {**meta, "exit_code": exit_code(records), "counts": counts(records),
           "jobs": [r.to_json() for r in records]}
    write_json_atomic(out / "summary.json", doc)
    write_bytes_atomic(out / "summary.md", markdown(records, doc).encode())
    write_bytes_atomic(out / "summary.html", page(records, doc).encode())
    write_bytes_atomic(out / "junit.xml", junit(records, doc))
    return doc


def size_text(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def latency_text(r: JobRecord) -> str:
    return "–" if r.latency_ms is None else f"{r.latency_ms:.3f} ms"


def _where(r: JobRecord) -> str:
    return f"{r.node_id[:8] or r.host}" if r.attempts else "–"


def _headline(doc: dict) -> str:
    c = doc["counts"]
    shown = ", ".join(f"{n} {v}" for v, n in c.items() if n)
    return f"{len(doc['jobs'])} jobs: {shown} in {doc['seconds']:.1f} s on cluster {doc['cluster']['kind']}"


def markdown(records: list[JobRecord], doc: dict) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [f"# forgeml batch: {cell(doc['jobs_file'])}", "", _headline(doc), "",
             "| job | verdict | bytes | latency | attempts | node | report | note |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        report = f"[report]({r.report})" if r.report else "–"
        note = cell(r.message) + (" (resumed)" if r.resumed else "")
        lines.append(f"| {cell(r.id)} | {r.verdict} | {size_text(r.bytes) if r.artifacts else '–'} | {latency_text(r)} | "
                     f"{r.attempts} | {cell(_where(r))} | {report} | {note} |")
    return "\n".join(lines) + "\n"


_STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}
.PASS{color:#176b2c;font-weight:600}.FAIL,.ERROR,.LOST,.UNSCHEDULABLE{color:#b3261e;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}.note{max-width:40em}"""


def page(records: list[JobRecord], doc: dict) -> str:
    e = html.escape
    rows = []
    for r in records:
        link = f'<a href="{e(r.report)}">report</a>' if r.report else "–"
        note = e(r.message) + (" <i>(resumed)</i>" if r.resumed else "")
        retried = f"<br><small>{'<br>'.join(e(x) for x in r.retried)}</small>" if r.retried else ""
        rows.append(f"<tr><td>{e(r.id)}</td><td class=\"{e(r.verdict)}\">{e(r.verdict)}</td>"
                    f"<td class=num>{e(size_text(r.bytes)) if r.artifacts else '–'}</td><td class=num>{e(latency_text(r))}</td>"
                    f"<td class=num>{r.attempts}</td><td>{e(_where(r))}</td><td>{link}</td>"
                    f"<td class=note>{note}{retried}</td></tr>")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>forgeml batch</title><style>{_STYLE}</style>"
            f"</head><body><h1>forgeml batch: {e(doc['jobs_file'])}</h1><p>{e(_headline(doc))}</p>"
            "<table><tr><th>job</th><th>verdict</th><th>bytes</th><th>latency</th><th>attempts</th><th>node</th>"
            f"<th>report</th><th>note</th></tr>{''.join(rows)}</table><p><small>{e(doc.get('machine', ''))}"
            "</small></p></body></html>\n")


def junit(records: list[JobRecord], doc: dict) -> bytes:
    c = doc["counts"]
    suite = ET.Element("testsuite", name="forgeml batch", tests=str(len(records)),
                       failures=str(c["FAIL"] + c["LOST"]), errors=str(c["ERROR"] + c["UNSCHEDULABLE"]),
                       skipped="0", time=f"{doc['seconds']:.3f}")
    for r in records:
        case = ET.SubElement(suite, "testcase", classname=f"forgeml.batch.{r.model}", name=r.id,
                             time=f"{r.seconds:.3f}")
        if r.verdict in ("FAIL", "LOST"):
            ET.SubElement(case, "failure", message=r.message, type=r.verdict).text = r.message
        elif r.verdict in ("ERROR", "UNSCHEDULABLE"):
            ET.SubElement(case, "error", message=r.message, type=r.verdict).text = r.message
        out = [f"report: {r.report}"] if r.report else []
        out += [f"{a.path} {a.bytes} bytes sha256 {a.sha256}" for a in r.artifacts]
        if out:
            ET.SubElement(case, "system-out").text = "\n".join(out)
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
