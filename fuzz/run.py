"""Longer fuzz runs of forgeml's file readers than the default suite allows.

    PYTHONPATH=. python fuzz/run.py --minutes 2 --reader all [--save DIR]

For each reader: hypothesis generates mutated files (flips, truncations, splices, huge length fields)
from a valid seed in batches with fresh seeds until the reader's time budget is spent, then the
deterministic huge-length cases run once. Prints per reader: examples run, distinct outcomes, crashes
(any exception but ``InputError``, or a read past ``readers.TIME_LIMIT``), peak RSS growth. Exit 1 on a crash.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.readers import READERS, huge_cases, outcome, strategy  # noqa: E402


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fuzz_reader(name: str, seconds: float, save: Path | None) -> dict:
    from hypothesis import HealthCheck, given, seed, settings

    outcomes: dict[str, int] = {}
    crashes: list[str] = []
    counter = [0]
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    rss0 = _rss_mib()

    def one(data: bytes):
        counter[0] += 1
        d = work / str(counter[0] % 4)
        try:
            key = outcome(name, data, d)
        except Exception as e:  # the property: nothing but InputError escapes a reader
            key = f"CRASH {type(e).__name__}: {str(e)[:120]}"
            crashes.append(key + "\n" + "".join(traceback.format_exception(e, limit=-3)))
            if save is not None:
                save.mkdir(parents=True, exist_ok=True)
                (save / f"{name}-{len(crashes)}.bin").write_bytes(data)
        outcomes[key] = outcomes.get(key, 0) + 1

    for data in huge_cases(name):
        one(data)
    end = time.monotonic() + seconds
    batch = 0
    while time.monotonic() < end:
        batch += 1

        @seed(batch)
        @settings(max_examples=200, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck))
        @given(strategy(name))
        def run(data):
            if time.monotonic() < end:
                one(data)

        run()
    return {"examples": counter[0], "outcomes": outcomes, "crashes": crashes, "rss_growth_mib": _rss_mib() - rss0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=1.0, help="time budget per reader")
    ap.add_argument("--reader", default="all", help=f"one of {', '.join(READERS)} or all")
    ap.add_argument("--save", type=Path, help="write crashing inputs here")
    ap.add_argument("--verbose", action="store_true", help="list every distinct outcome")
    a = ap.parse_args(argv)
    names = list(READERS) if a.reader == "all" else a.reader.split(",")
    bad = [n for n in names if n not in READERS]
    if bad:
        ap.error(f"unknown reader(s) {bad}; known: {', '.join(READERS)}")
    total = 0
    for name in names:
        t = time.monotonic()
        r = fuzz_reader(name, a.minutes * 60, a.save)
        total += len(r["crashes"])
        print(f"{name:12s} examples {r['examples']:7d}  distinct outcomes {len(r['outcomes']):4d}  "
              f"crashes {len(r['crashes'])}  peak RSS +{r['rss_growth_mib']:.0f} MiB  ({time.monotonic() - t:.0f} s)",
              flush=True)
        if a.verbose:
            for k, v in sorted(r["outcomes"].items(), key=lambda kv: -kv[1]):
                print(f"    {v:6d}  {k}")
        for c in dict.fromkeys(r["crashes"]):
            print("    " + c.replace("\n", "\n    "))
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
