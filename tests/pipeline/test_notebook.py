"""A Conversion in a notebook: its HTML is well formed, holds every stage, escapes what it shows."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from pathlib import Path

from forgeml.report.html import notebook


def _rows(html: str) -> list[list[str]]:
    root = ET.fromstring(html)  # strict: an unescaped < or & in a value would not parse
    return [["".join(td.itertext()) for td in tr.findall("td")] for tr in root.iter("tr") if tr.findall("td")]


def test_repr_html_has_every_stage(zoo_runs):
    result = zoo_runs("mlp")
    html = result._repr_html_()
    rows = _rows(html)
    stages = [st["name"] for st in result.manifest["stages"]]
    assert stages and [r[0] for r in rows if r[0]] and {r[0] for r in rows} == set(stages)
    for r in rows:
        assert r[-1] == "pass"  # the verdict column, as the run judged it
    outputs = {t["name"] for t in result.manifest["signature"]["outputs"]}
    assert {r[3] for r in rows} == outputs
    assert "PASS" in html and str(result.out_dir) in html


def test_repr_html_escapes_values(zoo_runs):
    m = copy.deepcopy(zoo_runs("mlp").manifest)
    m["stages"].append({"name": "tflite<x>", "kind": "target", "error": "op <Foo> & bar failed", "seconds": 0.1})
    m["errors"] = {"tflite<x>": "op <Foo> & bar failed"}
    m["ok"] = False
    html = notebook(m, "/tmp/a&b")
    rows = _rows(html)
    assert rows[-1][0] == "tflite<x>" and rows[-1][-1] == "op <Foo> & bar failed"
    assert "<Foo>" not in html and "FAIL" in html


def test_report_opens_report_html(zoo_runs, monkeypatch):
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    result = zoo_runs("mlp")
    path = result.report()
    assert path == result.out_dir / "report.html" and path.is_file()
    assert opened == [path.resolve().as_uri()]
    assert Path(path).read_text().startswith("<!DOCTYPE html>")
