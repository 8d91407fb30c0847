"""The parity table as text: one row per stage and output, the metrics a person compares, the verdict.
The markdown and HTML reports and ``ParityReport.table()`` all draw it from here."""

from __future__ import annotations

COLUMNS = [("max_abs", "max abs"), ("max_rel", "max rel"), ("mean_abs", "mean abs"),
            ("cosine", "cosine"), ("centered_cosine", "centered cos"), ("top1", "top-1"), ("top1_margin", "top-1 decided"),
            ("exact_match", "exact")]


def fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if 0.999 <= abs(v) <= 1.0:
            return f"{v:.6f}"
        return f"{v:.3g}" if abs(v) >= 1e-3 and abs(v) < 1e4 else f"{v:.2e}"
    return str(v)


def cell(text: str) -> str:
    """Table-safe text: a bare | would end the cell."""
    return str(text).replace("|", "\\|")


def header(*lead: str) -> list[str]:
    names = [*lead, "output", *(h for _, h in COLUMNS), "verdict"]
    return ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]


def row(lead: list[str], values) -> str:
    """``values``: a ``ParityRow``."""
    verdict = "pass" if values.passed else f"**FAIL**: {cell(values.problem or '')}"
    return "| " + " | ".join([*lead, values.output, *(fmt(values.metric(k)) for k, _ in COLUMNS), verdict]) + " |"


def parity_table(stages: list[tuple[str, object]]) -> str:
    """``stages``: (stage name, ``StageParity``) pairs, in run order."""
    lines = header("stage")
    for stage, parity in stages:
        lines += [row([f"{stage} ({parity.profile.name})"], r) for r in parity.rows]
    return "\n".join(lines)
