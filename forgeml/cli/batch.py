"""What ``forgeml batch`` shows while it runs: a status line with a bar (done / failed / running / ETA) in a
terminal, a line per finished job on stderr (also in CI logs), and the final table.

The ETA is the rate of jobs finished in this run (not those ``--resume`` kept) since the first one
started, times the jobs left: a batch's jobs are similar enough for that, and it needs no model of them.
"""

from __future__ import annotations

import time
from typing import Callable

from forgeml.cli.progress import WIDTH, clock_text

MARK = {"PASS": "[green]✓[/]", "FAIL": "[red]✗ parity[/]", "ERROR": "[red]✗ error[/]",
        "UNSCHEDULABLE": "[red]✗ unschedulable[/]", "LOST": "[red]✗ lost[/]"}


class BatchBar:
    """``[████░░░░] 12/40 · 1 failed · 2 running · ETA 0:31`` from the scheduler's events."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._t0 = clock()
        self._kept = 0  # records --resume kept: finished before this run, not part of its rate
        self._ran = 0

    def render(self, e) -> str:
        if e.kind == "done" and e.record is not None:
            if e.record.resumed:
                self._kept += 1
            else:
                self._ran += 1
        total = max(e.total, 1)
        filled = int(WIDTH * e.done / total)
        bar = "█" * filled + "░" * (WIDTH - filled)
        left = e.total - e.done
        if not left:
            eta = f"took {clock_text(self._clock() - self._t0)}"
        elif self._ran:
            eta = "ETA " + clock_text(left * (self._clock() - self._t0) / self._ran)
        else:
            eta = "ETA –"
        failed = f" · {e.failed} failed" if e.failed else ""
        return f"[{bar}] {e.done}/{e.total}{failed} · {e.running} running · {eta}"


def job_line(rec) -> str:
    """One finished job for the log (rich markup; the caller escapes nothing else)."""
    from rich.markup import escape

    where = f" on {escape(rec.node_id[:8] or rec.host)}" if rec.attempts else ""
    tries = f" after {rec.attempts} attempts" if rec.attempts > 1 else ""
    note = f"  [dim]{escape(rec.message)}[/]" if rec.message else ""
    kept = " (resumed)" if rec.resumed else ""
    return f"  {MARK[rec.verdict]} {escape(rec.id):28} {rec.seconds:7.2f}s{where}{tries}{kept}{note}"


def table(result):
    from rich.markup import escape
    from rich.table import Table

    from forgeml.batch.summary import latency_text, size_text

    t = Table(title=f"forgeml batch → {escape(str(result.out_dir))}", title_justify="left")
    for col in ("job", "verdict", "bytes", "latency", "attempts", "node"):
        t.add_column(col)
    for r in result.records:
        colour = "green" if r.ok else "red"
        t.add_row(escape(r.id), f"[{colour}]{r.verdict}[/]", size_text(r.bytes) if r.artifacts else "–", latency_text(r),
                  str(r.attempts), escape(r.node_id[:8] or r.host or "–"))
    return t
