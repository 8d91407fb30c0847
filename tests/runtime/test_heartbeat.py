"""The heartbeat: work with no count to report still tells its listener it is alive, then stops."""

from __future__ import annotations

import time

from forgeml.runtime.heartbeat import heartbeat


def test_beats_while_the_block_runs_and_stops_after():
    seen: list[tuple[int, int]] = []
    with heartbeat(lambda d, t: seen.append((d, t)), every=0.05):
        time.sleep(0.6)
    n = len(seen)
    assert n >= 3 and all(t == 0 for _, t in seen)  # total 0: no count known
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # elapsed seconds never go back
    time.sleep(0.2)
    assert len(seen) == n  # the thread is gone with the block


def test_a_failing_listener_does_not_break_the_work():
    def boom(d, t):
        raise RuntimeError("listener bug")

    with heartbeat(boom, every=0.02):
        time.sleep(0.1)
        value = 42
    assert value == 42
    with heartbeat(None):  # no listener: nothing started
        pass
