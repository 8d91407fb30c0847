"""The verdict word, the exit code and the printed digits agree."""

from __future__ import annotations

import numpy as np

from forgeml.report.gating import exit_code, shown, summary, verdict, verdict_reason


def test_shown_never_crosses_a_threshold():
    assert shown(0.84996, 4) == "0.8499" and shown(0.85, 4) == "0.8500" and shown(1.0, 6) == "1.000000"
    rng = np.random.default_rng(0)
    thresholds = [0.85, 0.9, 0.95, 0.98, 0.99, 0.999, 0.9999]
    values = [*rng.uniform(0.8, 1.0, 2000), *thresholds, *(np.nextafter(t, 0) for t in thresholds)]
    for v in values:
        for t in thresholds:
            assert (float(shown(v, 4)) >= t) == (v >= t), (v, t)


def _manifest(cos: float) -> dict:
    """A run record as the pipeline writes it: one passed stage judged by a cosine limit of 0.99."""
    row = {"output": "logits", "passed": cos >= 0.99, "cosine": cos, "atol_needed": 0.0}
    return {"ok": row["passed"], "errors": {}, "source": {}, "stages": [
        {"name": "onnx (int8)", "kind": "artifact", "parity": {"passed": row["passed"], "profile": "int8",
                                                                "tolerance": {"min_cosine": 0.99}, "rows": [row]}}]}


def test_verdict_follows_the_exit_code_under_fail_on_warn():
    close = _manifest(0.993)  # passes, but within 2x of the limit: a warning
    assert exit_code(close, "fail") == 0 and verdict(close, "fail") == "PASS" and verdict_reason(close, "fail") == ""
    assert exit_code(close, "warn") == 1 and verdict(close, "warn") == "FAIL"
    assert verdict_reason(close, "warn") == "--fail-on warn: 1 warning(s)"
    s = summary(close, fail_on="warn")
    assert s["verdict"] == "FAIL" and s["exit_code"] == 1 and s["ok"] and len(s["warnings"]) == 1
    clear = _manifest(0.9999)
    assert verdict(clear, "warn") == "PASS" and exit_code(clear, "warn") == 0
    failed = _manifest(0.98)
    assert verdict(failed, "fail") == "FAIL" and verdict_reason(failed, "warn") == ""


def test_recorded_warnings_count_and_the_recorded_gate_is_every_reports_default():
    """What the CLI and the reports print as warnings is what --fail-on warn counts, and a run converted
    under --fail-on warn reads FAIL in report.md, report.html and model_card.md as its exit code does."""
    from forgeml.report import html, markdown
    from forgeml.report.gating import headline, warnings
    from forgeml.report.model_card import render_card

    m = _manifest(0.9999)  # no derived warning
    m["warnings"] = ["int8-static: calibrated on synthetic inputs"]
    assert warnings(m) == m["warnings"] and exit_code(m, "warn") == 1 and exit_code(m) == 0
    assert headline(m) == "PASS"
    m["fail_on"] = "warn"
    assert exit_code(m) == 1 and headline(m) == "FAIL (--fail-on warn: 1 warning(s))"
    assert summary(m)["fail_on"] == "warn" and summary(m)["verdict"] == "FAIL"
    assert markdown.render(m).startswith("# forgeml parity report — FAIL (--fail-on warn: 1 warning(s))")
    assert "FAIL (--fail-on warn: 1 warning(s))" in html.render(m)
    assert "**FAIL (--fail-on warn: 1 warning(s))**" in render_card(m, {"inputs": [], "outputs": []})
    assert exit_code(m, "fail") == 0  # an explicit gate still wins


def test_a_target_not_built_is_named_in_the_verdict():
    m = _manifest(0.9999)
    m["errors"] = {"tensorrt": "tensorrt: TensorRT is not installed"}
    assert exit_code(m) == 2 and verdict_reason(m) == "target(s) not built: tensorrt"
