"""The batch's bar: done / failed / running / ETA from the scheduler's events, drawn in a terminal only."""

from __future__ import annotations

import os

import pytest

from forgeml.batch.record import JobRecord
from forgeml.batch.scheduler import BatchEvent
from forgeml.cli.batch import BatchBar
from tests.cli.test_progress import _run_in_pty


def _rec(jid: str, verdict: str = "PASS", resumed: bool = False) -> JobRecord:
    return JobRecord(id=jid, model="m", src="zoo:m", target="onnx", precision="fp32", input_hash="h",
                     verdict=verdict, resumed=resumed)


def test_bar_counts_and_eta_from_jobs_run_here():
    now = [0.0]
    bar = BatchBar(clock=lambda: now[0])
    assert bar.render(BatchEvent("done", 10, 2, 0, 0, _rec("a", resumed=True))).endswith("2/10 · 0 running · ETA –")
    now[0] = 10.0  # one job of this run took 10 s; the resumed ones do not count in the rate: 7 left, 70 s
    text = bar.render(BatchEvent("done", 10, 3, 1, 2, _rec("b", "FAIL")))
    assert text == "[" + "█" * 7 + "░" * 17 + "] 3/10 · 1 failed · 2 running · ETA 1:10"
    now[0] = 95.0
    assert bar.render(BatchEvent("tick", 10, 10, 1, 0)).endswith("10/10 · 1 failed · 0 running · took 1:35")


@pytest.mark.slow
def test_cli_draws_the_batch_bar_in_a_terminal(tmp_path):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("parity_batches: 0\nmodels:\n  - src: zoo:mlp\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["COLUMNS"], env["TERM"] = "150", "xterm"
    out = _run_in_pty(["batch", str(jobs), "--cluster", "none", "-o", str(tmp_path / "o")], env)
    assert (tmp_path / "o" / "summary.json").is_file(), out[-2000:]
    assert "0/1 · 1 running" in out and "mlp.onnx.fp32" in out, out[-2000:]
