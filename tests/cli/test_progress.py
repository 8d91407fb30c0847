"""Progress: events with (done, total) reach an API caller; the CLI draws a bar only for a person."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

import forgeml
from forgeml.cli.progress import ProgressText, bar_wanted
from forgeml.options import ParityOptions, QuantizeOptions


class _Stream:
    def __init__(self, tty: bool):
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_bar_only_for_a_terminal_outside_ci():
    assert bar_wanted(False, _Stream(True), {})
    assert not bar_wanted(True, _Stream(True), {})  # --json
    assert not bar_wanted(False, _Stream(True), {"CI": "true"})
    assert not bar_wanted(False, _Stream(False), {})
    assert bar_wanted(False, _Stream(True), {"CI": "false"})


def test_progress_text_counts_and_eta():
    now = [0.0]
    p = ProgressText(delay=1.0, clock=lambda: now[0])
    assert p.render("onnx", "target", 1, 10) is None  # the loop starts: too early to draw
    now[0] = 2.0
    text = p.render("onnx", "target", 5, 10)  # 4 done in 2 s: 5 left take 2.5 s
    assert "5/10" in text and "ETA 0:02" in text
    now[0] = 4.0
    assert p.render("onnx", "target", 10, 10).endswith("10/10 took 0:04")
    assert p.render("onnx", "target", 1, 10) is None  # the stage's next loop starts over
    p.started("cleanup", "pass")
    assert p.render("cleanup", "pass", 1, 10) is None
    now[0] = 6.0  # the stage has run for 2 s: its second loop is drawn at once
    p.render("cleanup", "pass", 10, 10)
    assert p.render("cleanup", "pass", 1, 10) == "[" + "█" * 2 + "░" * 22 + "] 1/10 ETA –"
    now[0] = 80.0  # a heartbeat (total 0: a compiler call with nothing to count) shows a clock
    assert p.render("cleanup", "pass", 74, 0).endswith("] 1:14 elapsed")


def test_api_on_event_hears_progress(tmp_path):
    events = []
    result = forgeml.convert("zoo:mlp", targets=["onnx"], out_dir=tmp_path / "o", on_event=events.append,
                             parity=ParityOptions(batches=5),
                             quantize=QuantizeOptions("int8-static", synthetic_calibration=True))
    assert result.exit_code in (0, 1)
    batches = result.manifest["stages"][0]["parity"]["batches"]
    assert batches == 6  # the example + 5 seeded
    ticks: dict[str, list] = {}
    for e in events:
        if e.status == "progress":
            ticks.setdefault(e.name, []).append(e.progress)
    # every checked stage reports its own parity batches (a quantized stage's include the held-out
    # samples), ending at the total
    totals = {st["name"]: st["parity"]["batches"] for st in result.manifest["stages"] if st.get("parity")}
    for name, n in totals.items():
        assert (n, n) in ticks[name], name
        assert all(0 < d <= t for d, t in ticks[name])
    assert any(n > batches for n in totals.values())  # int8-static: judged on held-out samples too
    calib = [p for name, seen in ticks.items() if "static" in name or "quantize" in name for p in seen
             if p[1] != totals.get(name)]
    assert calib and calib[-1][0] == calib[-1][1]  # calibration batches, counted to the end


def test_fallback_search_and_localization_report_progress(tmp_path):
    """The fallback search counts its steps; a failing stage's localization is its own timed step."""
    import numpy as np
    import onnx

    from tests.passes.conftest import mlp_proto

    onnx.save(mlp_proto(outlier=30.0), tmp_path / "outlier.onnx")
    x = np.random.default_rng(5).normal(size=(8, 16)).astype(np.float32)
    events = []
    result = forgeml.convert(str(tmp_path / "outlier.onnx"), {"x": x}, targets=["onnx"],
                             out_dir=tmp_path / "tight", on_event=events.append,
                             quantize=QuantizeOptions("int8", max_cosine_drop=1e-4))
    steps = next(s for s in result.manifest["stages"] if s["name"] == "int8-dynamic")["details"]["steps"]
    ticks = [e.progress for e in events if e.name == "int8-dynamic" and e.status == "progress"]
    planned = next(t for d, t in ticks if d == 0)  # the search counts from 0; parity checks from 1
    searched = [p for p in ticks if p[1] == planned]
    assert searched and searched[0] == (0, searched[0][1])  # (steps tried, steps planned) from 0
    assert len(steps) - 1 <= searched[0][1] and len(searched) == len(steps) - 1

    events.clear()  # atol 0 on int8: the stage fails, and localization runs as its own step
    failed = forgeml.convert(str(tmp_path / "outlier.onnx"), {"x": x}, targets=["onnx"],
                             out_dir=tmp_path / "fail", on_event=events.append, quantize="int8",
                             parity=ParityOptions(atol=0.0, rtol=0.0, localize="always"))
    assert not failed.ok
    seen = [(e.name, e.kind, e.status) for e in events if e.name == "localize"]
    assert seen[0] == ("localize", "parity", "start") and seen[-1] == ("localize", "parity", "done")
    assert any("divergence" in st for st in failed.manifest["stages"])


def _run_in_pty(args: list[str], env: dict) -> str:
    """The CLI with a real terminal as stdin/stdout/stderr; everything it drew."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "forgeml", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    out = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=120)
    os.close(master)
    return out.decode(errors="replace")


@pytest.mark.parametrize("extra,env_ci,drawn", [([], None, True), (["--json"], None, False),
                                                  pytest.param([], "true", False, marks=pytest.mark.slow)])
def test_cli_bar_in_a_terminal_only(tmp_path, extra, env_ci, drawn):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["COLUMNS"], env["TERM"] = "150", "xterm"
    if env_ci:
        env["CI"] = env_ci
    # 1500 parity batches: the converter stage (export, then its loops) runs for seconds on any CPU
    out = _run_in_pty(["convert", "zoo:mlp", "--to", "onnx", "--parity-batches", "1500", "-o",
                       str(tmp_path / "o"), *extra], env)
    assert (Path(tmp_path) / "o" / "manifest.json").is_file(), out[-2000:]
    assert ("/1501" in out and "█" in out) is drawn, out[-2000:]
