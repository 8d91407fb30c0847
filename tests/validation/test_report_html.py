"""report.html: rendered from a real run, opened in a real headless Chromium (Debian's package).

The report comes from ``forgeml convert zoo:transformer --quantize int8`` with several targets (onnx,
tflite when forgeml[tflite] is installed, safetensors), so it holds a quantized stage and several
variants. The browser test takes a screenshot (kept under ``$FORGEML_TEST_ARTIFACTS`` or
./test-artifacts), reads the DOM the browser built, and checks from Chromium's own network log that
opening the report fetched nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from forgeml.parity.table import fmt
from forgeml.report import html as report_html

ROOT = Path(__file__).resolve().parents[2]


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)


# the int8_run fixture (tests/conftest.py) adds tflite to the variants when forgeml[tflite] is installed
HAS_TFLITE = all(importlib.util.find_spec(m) for m in ("onnx2tf", "ai_edge_litert"))
TARGETS = ("onnx", "tflite", "safetensors") if HAS_TFLITE else ("onnx", "safetensors")


def _offline_html(html: str) -> None:
    """Nothing in the file can make a browser fetch: no scripts, links, external sources or URLs."""
    assert not re.search(r"https?://", html)
    assert not re.search(r"<(script|link|iframe|img|object|embed)\b", html, re.I)
    assert not re.search(r"\b(src|href)\s*=", html, re.I)
    assert "url(" not in html and "@import" not in html


@pytest.mark.slow
def test_report_written_beside_manifest_and_complete(int8_run):
    out = int8_run
    html = (out / "report.html").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert report_html.render(manifest) == html  # the report says exactly what the manifest says
    _offline_html(html)
    assert ">PASS<" in html if manifest["ok"] else ">FAIL<" in html
    for st in manifest["stages"]:
        assert f"<td class=\"\">{escape(st['name'])}</td>" in html
    assert "--quantize int8" in html  # provenance: the command line that made it
    # the int8 stage's measured numbers are what the table shows
    q = next(s for s in manifest["stages"] if s["name"] == "int8-dynamic")
    assert q["parity"]["profile"] == "int8" and "int8" in html
    assert fmt(q["parity"]["rows"][0]["cosine"]) in html
    # error plots and the variants chart are inline SVG, one pair per stage output
    assert html.count('aria-label="error histogram"') == len(manifest["stages"])
    assert 'aria-label="variants: size vs latency vs accuracy"' in html
    for name, a in manifest["artifacts"].items():
        assert a["sha256"] in html
    assert [p["name"] for p in manifest["run"]["passes"]][-1] == "int8-dynamic"


class _Rows(HTMLParser):
    """Cell texts of every <tr> with <td>s, and the SVG circles (chart points), in a piece of HTML."""

    def __init__(self, html: str):
        super().__init__()
        self.rows: list[list[str]] = []
        self.circles = 0
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._cell = []
        elif tag == "circle":
            self.circles += 1

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _section(html: str, element_id: str) -> str:
    """The HTML from the element with ``element_id`` to the next heading."""
    start = html.index(f'id="{element_id}"')
    end = html.find("<h2", start)
    return html[start:end if end != -1 else len(html)]


@pytest.mark.slow
def test_variants_side_by_side(int8_run):
    """One table row and one chart point per emitted variant, with the numbers its stage measured."""
    html = (int8_run / "report.html").read_text()
    manifest = json.loads((int8_run / "manifest.json").read_text())
    stages = {st["name"]: st for st in manifest["stages"] if st["kind"] == "target"}
    assert list(manifest["artifacts"]) == list(TARGETS)
    part = _section(html, "variants")
    section = _Rows(part)
    rows = [r for r in section.rows if r]
    assert [r[0] for r in rows] == list(TARGETS)
    for row, (name, art) in zip(rows, manifest["artifacts"].items()):
        par = stages[name]["parity"]
        _, path, profile, size, _latency, cosine = row[:6]
        assert path == art["path"] and profile == par["profile"] and size == report_html._bytes(art["bytes"])
        assert cosine == fmt(min(r["cosine"] for r in par["rows"]))
        assert row[-1] == ("pass" if par["passed"] else "FAIL")
        assert f"{escape(name)} (acc " in part  # the chart's label for this variant
    # --quantize int8 made the graph targets int8; safetensors keeps the source's fp32 weights
    profiles = {r[0]: r[2] for r in rows}
    assert profiles["onnx"] == "int8" and profiles["safetensors"] == "fp32"
    if HAS_TFLITE:
        assert profiles["tflite"] == "int8"
    assert section.circles == sum(1 for n in TARGETS if "median_ms" in (stages[n].get("latency") or {}))


def _page_requests(netlog: Path) -> list[str]:
    """URLs of non-file requests a page started, from Chromium's --log-net-log JSON."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for e in log["events"]:
        p = e.get("params") or {}
        url = p.get("url") or ""
        if e["type"] == start and p.get("initiator") != "not an origin" and url and not url.startswith("file:"):
            urls.append(url)
    return urls


@pytest.mark.slow
def test_chromium_renders_report_offline(int8_run, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium); the browser check needs it")
    report = int8_run / "report.html"
    profile = tmp_path / "profile"
    netlog = tmp_path / "netlog.json"
    shot = tmp_path / "report-transformer-int8.png"
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
             f"--user-data-dir={profile}", "--hide-scrollbars"]
    url = report.as_uri()
    subprocess.run(flags + ["--window-size=1280,1400", f"--screenshot={shot}", f"--log-net-log={netlog}", url],
                   check=True, capture_output=True, timeout=120)
    dom = subprocess.run(flags + ["--dump-dom", url], check=True, capture_output=True, timeout=120,
                         text=True).stdout
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the browser built the page: verdict banner first, then the stage table with every stage
    assert re.search(r'id="verdict".*?>(PASS|FAIL)<', dom)
    assert dom.index('id="verdict"') < dom.index('id="stages"')
    manifest = json.loads((int8_run / "manifest.json").read_text())
    for st in manifest["stages"]:
        assert f">{escape(st['name'])}</td>" in dom
    assert dom.count("<svg") >= 2 * len(manifest["stages"])
    variants = _Rows(_section(dom, "variants"))
    assert [r[0] for r in variants.rows if r] == list(manifest["artifacts"])
    # nothing fetched: no request the page started (the browser's own update/time pings are not the page's)
    assert _page_requests(netlog) == []
    # ... and the same check does see a page that fetches something
    control = tmp_path / "control.html"
    control.write_text('<html><body><img src="http://127.0.0.1:9/x.png"><p>control</p></body></html>')
    subprocess.run(flags + [f"--screenshot={tmp_path / 'c.png'}", f"--log-net-log={tmp_path / 'c.json'}",
                            control.as_uri()], check=True, capture_output=True, timeout=120)
    assert _page_requests(tmp_path / "c.json") == ["http://127.0.0.1:9/x.png"]
    keep = Path(os.environ.get("FORGEML_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / shot.name)


def test_save_report_picks_format_by_suffix(tmp_path):
    manifest = {"ok": False, "source": {"kind": "onnx", "ref": "a.onnx", "sha256": "00"},
                "signature": {"inputs": [], "outputs": []}, "stages": [], "artifacts": {}, "tools": {}}
    html = report_html.save_report(manifest, tmp_path / "r.html").read_text()
    md = report_html.save_report(manifest, tmp_path / "r.md").read_text()
    assert html.startswith("<!DOCTYPE html>") and ">FAIL<" in html
    assert md.startswith("# forgeml parity report — FAIL")
