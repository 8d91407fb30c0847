"""The progress bar the CLI draws on stderr from the pipeline's "progress" ``StageEvent``s.

Only for a person watching: never under ``--json``, in CI (``CI=true``) or when stderr is not a
terminal, where a redrawn line would only clutter a log. Shown once a stage has run for ``delay``
seconds, so quick stages keep the plain spinner.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Mapping

WIDTH = 24


def bar_wanted(as_json: bool, stream=None, env: Mapping[str, str] | None = None) -> bool:
    """Whether to draw a bar: not for machines (``--json``, ``CI=true``, stderr not a TTY)."""
    env = os.environ if env is None else env
    if as_json or env.get("CI", "").strip().lower() in ("true", "1", "yes"):
        return False
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed stream
        return False


def clock_text(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class ProgressText:
    """The bar's text for the loop running now: ``[████░░░░] 12/40 ETA 0:31``. The ETA is the rate
    since this loop's first report, so time spent before the loop (loading, compiling) is not in it.
    A total of 0 is work with no count (a heartbeat): its ``done`` is seconds elapsed."""

    def __init__(self, delay: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self._delay, self._clock = delay, clock
        self._key: tuple | None = None
        self._stage: tuple = ("", "", 0.0)  # (name, kind, when it started)
        self._t0 = 0.0
        self._d0 = self._last = 0

    def started(self, name: str, kind: str) -> None:
        """A stage began (its "start" event): the delay counts from here."""
        self._stage = (name, kind, self._clock())

    def render(self, name: str, kind: str, done: int, total: int) -> str | None:
        """The text for (done, total) of stage ``name``; None while it is too early to draw."""
        now = self._clock()
        key = (name, kind, total)
        if key != self._key or done < self._last:  # a new loop (another stage, or the next loop of this one)
            self._key, self._t0, self._d0 = key, now, done
        self._last = done
        elapsed = now - self._t0
        began = self._stage[2] if self._stage[:2] == (name, kind) else self._t0
        if now - began < self._delay or total < 0:
            return None
        if total == 0:  # no count known (a compiler call): a clock, not a bar
            return f"[{'·' * WIDTH}] {clock_text(done)} elapsed"
        done = min(done, total)
        filled = int(WIDTH * done / total)
        bar = "█" * filled + "░" * (WIDTH - filled)
        if done >= total:
            eta = f"took {clock_text(elapsed)}"
        elif done > self._d0:
            eta = "ETA " + clock_text((total - done) * elapsed / (done - self._d0))
        else:
            eta = "ETA –"
        return f"[{bar}] {done}/{total} {eta}"
