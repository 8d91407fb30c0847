"""CI gating: exit codes, warnings, and the one-object JSON summary a pipeline reads.

Exit codes (the CLI's contract):
  0  every stage within tolerance (and, with ``--fail-on warn``, no warning)
  1  a stage failed parity, or ``--fail-on warn`` and a warning was raised (the report is still written)
  2  bad input or usage, or a target that could not be built

A *warning* is something that passed but that a reviewer should see before shipping: a metric within
less than half of its budget's headroom, a precision pass whose budget failed on held-out inputs, top-1 disagreement the fp32 profile reports but does not
judge, an import that had to fall back to another exporter, and every warning the run recorded (a pass's,
a parity row's). ``warnings()`` is the one list: what the CLI and both reports print is what ``--fail-on
warn`` counts. The gate a run was converted under (``Manifest.fail_on``) is the default of every function
here, so report.md, report.html, the summary and the exit code give the same verdict.
"""

from __future__ import annotations

from forgeml.manifest import Manifest

FAIL_ON = ("fail", "warn")


def warnings(manifest: Manifest | dict) -> list[str]:
    """Every warning of a run, recorded or derived from its numbers, each once."""
    m = Manifest.coerce(manifest)
    out = list(m.warnings)
    source = m.source
    if source.fallback:
        out.append(f"import fell back to {(source.route or '').split(' ')[0]}: {source.fallback}")
    for st in m.stages:
        held = st.details.held_out if st.details else None
        if held is not None and held.passed is False:
            out.append(f"{st.name}: accuracy budget met on the inputs the fallback chose nodes on, but not on "
                       f"{held.batches} held-out batches ({held.problem or ''})")
        par = st.parity
        if not par:
            continue
        tol = par.tolerance
        for row in par.rows:
            if not row.passed:
                continue
            where = f"{st.name} / {row.output}"
            atol = tol.atol
            if atol and (row.atol_needed or 0) > 0.5 * atol:
                out.append(f"{where}: error uses {row.atol_needed / atol:.0%} of atol {atol:g}")
            cos, min_cos = row.cosine, tol.min_cosine
            if cos is not None and min_cos is not None and min_cos < 1 and (1 - cos) > 0.5 * (1 - min_cos):
                out.append(f"{where}: cosine {cos:.6f} is within 2x of the limit {min_cos:g}")
            if row.top1 is not None and tol.min_top1 is None and row.top1 < 1.0:
                out.append(f"{where}: top-1 agreement {row.top1:.4f} (reported, not judged by {par.profile})")
    return list(dict.fromkeys(out))


def gate(manifest: Manifest, fail_on: str | None) -> str:
    """The gate to judge by: the one given, else the one the run was converted under, else ``fail``."""
    return fail_on or manifest.fail_on or "fail"


def exit_code(manifest: Manifest | dict, fail_on: str | None = None) -> int:
    m = Manifest.coerce(manifest)
    if m.errors:
        return 2
    if not m.ok:
        return 1
    if gate(m, fail_on) == "warn" and warnings(m):
        return 1
    return 0


def shown(value: float, places: int) -> str:
    """A higher-is-better metric (cosine, top-1) printed by truncation, not rounding: for a threshold with at
    most ``places`` decimals, the printed number is >= the threshold exactly when the value is, so a
    verdict never contradicts the digits beside it (0.84996 prints 0.8499 against a 0.85 limit, not 0.8500)."""
    from decimal import ROUND_FLOOR, Decimal

    return str(Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-places), rounding=ROUND_FLOOR))


def verdict(manifest: Manifest | dict, fail_on: str | None = None) -> str:
    """PASS or FAIL, computed from the same facts as the exit code (so the word printed and the exit agree)."""
    return "PASS" if exit_code(manifest, fail_on) == 0 else "FAIL"


def verdict_reason(manifest: Manifest | dict, fail_on: str | None = None) -> str:
    """Why a run fails beyond a parity row's FAIL (a target not built, the warn gate), in words; empty when
    there is nothing to add."""
    m = Manifest.coerce(manifest)
    if m.errors:  # exit 2 whatever the parity: say which artifacts are missing
        return f"target(s) not built: {', '.join(m.errors)}"
    if m.ok and gate(m, fail_on) == "warn":
        n = len(warnings(m))
        if n:
            return f"--fail-on warn: {n} warning(s)"
    return ""


_DIVERGENCE_KEYS = ("found", "node", "op", "module", "module_class", "note")


def headline(manifest: Manifest | dict, fail_on: str | None = None) -> str:
    """``PASS`` or ``FAIL (why)``: the verdict the reports print, the same as the exit code's."""
    reason = verdict_reason(manifest, fail_on)
    return verdict(manifest, fail_on) + (f" ({reason})" if reason else "")


def summary(manifest: Manifest | dict, *, out_dir: str | None = None, fail_on: str | None = None) -> dict:
    """The JSON a CI step parses: verdict, exit code, per-stage verdicts, artifacts, what failed and where."""
    m = Manifest.coerce(manifest)
    stages = []
    first_failure = None
    for st in m.stages:
        par = st.parity
        entry = {"name": st.name, "kind": st.kind, "passed": None if par is None else par.passed}
        if par:
            entry["profile"] = par.profile
            failing = [{"output": r.output, "problem": r.problem or ""} for r in par.rows if not r.passed]
            if failing:
                entry["failing"] = failing
                first_failure = first_failure or st.name
        if st.error:
            entry["error"] = st.error
        if st.latency and st.latency.median_ms is not None:
            entry["latency_ms"] = st.latency.median_ms
        if st.divergence:
            d = st.divergence.to_json()
            entry["divergence"] = {k: d[k] for k in _DIVERGENCE_KEYS if k in d}
        stages.append(entry)
    code = exit_code(m, fail_on)
    return {"ok": m.ok, "exit_code": code, "verdict": verdict(m, fail_on),
            "fail_on": gate(m, fail_on), "out_dir": out_dir, "first_failure": first_failure, "stages": stages,
            "artifacts": {k: {"path": a.path, "bytes": a.bytes, "sha256": a.sha256} for k, a in m.artifacts.items()},
            "errors": dict(m.errors), "warnings": warnings(m)}
