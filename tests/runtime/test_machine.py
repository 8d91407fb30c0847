"""The machine record: read from this machine's /proc, carried into the manifest and both reports."""

from __future__ import annotations

import os
from pathlib import Path

from forgeml.runtime.machine import FLAGS, detect

_CPUINFO = """processor\t: 0
model name\t: Example CPU 9000
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_tile
processor\t: 1
model name\t: Example CPU 9000
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_tile
"""


def test_detect_reads_this_machine():
    m = detect()
    assert m.logical_cpus == os.cpu_count()
    assert 1 <= m.usable_cpus <= m.logical_cpus
    assert set(m.flags) <= set(FLAGS)
    if Path("/proc/cpuinfo").exists():
        text = Path("/proc/cpuinfo").read_text()
        assert m.cpu in text  # the model name line, not a guess
        assert ("avx2" in m.flags) == (" avx2" in text)
        assert m.load_1m is not None and m.load_1m >= 0
    line = m.line()
    assert line.startswith("machine: ") and m.cpu in line and str(m.logical_cpus) in line


def test_detect_parses_cpuinfo_flags_in_order():
    m = detect(_CPUINFO)
    assert m.cpu == "Example CPU 9000"
    assert m.flags == ("avx2", "avx512f", "avx512_vnni", "amx_tile")  # avx_vnni absent, sse2 not tracked
    assert m.to_json()["flags"] == list(m.flags)


def test_manifest_and_reports_name_the_machine(zoo_runs):
    from tests.conftest import read_manifest

    result = zoo_runs("mlp")
    m = read_manifest(result.out_dir)
    here = detect()
    assert m["machine"]["cpu"] == here.cpu and m["machine"]["flags"] == list(here.flags)
    assert m["machine"]["logical_cpus"] == os.cpu_count()
    html = (result.out_dir / "report.html").read_text()
    assert 'id="machine"' in html and here.cpu in html
    md = (result.out_dir / "report.md").read_text()
    header = md.split("## ", 1)[0]  # in the header, before the first section
    assert f"- machine: {here.cpu}" in header
