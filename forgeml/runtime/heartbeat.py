"""Progress for work that cannot count its own steps (a compiler call, one long runtime call).

Such work reports ``(seconds elapsed, 0)`` once a second from a daemon thread: a total of 0 means
"no count is known", so the CLI shows a clock instead of a bar, and a notebook's ``on_event`` still
hears that the stage is alive.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

Progress = Callable[[int, int], None]


@contextmanager
def heartbeat(progress: Progress | None, every: float = 1.0) -> Iterator[None]:
    """Call ``progress(elapsed_seconds, 0)`` every ``every`` seconds while the block runs."""
    if progress is None:
        yield
        return
    stop = threading.Event()
    t0 = time.monotonic()

    def beat() -> None:
        while not stop.wait(every):
            try:
                progress(int(time.monotonic() - t0), 0)
            except Exception:  # a listener's failure must not kill the work it watches
                return

    thread = threading.Thread(target=beat, name="forgeml-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
