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
    checked = [st["name"] for st in result.manifest["stages"] if st.get("parity")]
    for name in checked:  # every checked stage reports its parity batches, ending at the total
        assert (batches, batches) in ticks[name], name
        assert all(0 < d <= t for d, t in ticks[name])
    calib = [p for name, seen in ticks.items() if "static" in name or "quantize" in name for p in seen
             if p[1] != batches]
    assert calib and calib[-1][0] == calib[-1][1]  # calibration batches, counted to the end


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
