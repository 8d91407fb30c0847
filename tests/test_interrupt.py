"""Interrupted and concurrent runs: an output directory is either absent, the old output, or whole.

Real `forgeml convert` subprocesses are killed (SIGKILL, SIGINT) at random points, run out of disk,
hit a read-only filesystem, and run two at a time. Whole means: manifest.json present and every
file it lists present with its recorded sha256. The random delays come from a seed printed on failure
(set FORGEML_KILL_SEED to replay one).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from forgeml.fileio import StagedDir, sweep_stale

MODEL = "zoo:mlp"
TARGETS = "onnx,safetensors"
SEED = int(os.environ.get("FORGEML_KILL_SEED", time.time_ns() % 1_000_000))
LEFTOVER = re.compile(r"\.(?P<name>.+)\.forgeml-(?:staging|old)-\d+-[0-9a-f]+")


def _cmd(out: Path, force: bool = False) -> list[str]:
    return [sys.executable, "-m", "forgeml", "convert", MODEL, "--to", TARGETS, "-o", str(out),
            *(["--force"] if force else [])]


class _Run:
    """A convert subprocess whose stderr lines are timestamped as they arrive (progress lines)."""

    def __init__(self, out: Path, force: bool = False):
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(_cmd(out, force), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, cwd=out.parent)
        self.lines: list[str] = []
        self.seen = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stderr:
            with self.seen:
                self.lines.append(line.rstrip("\n"))
                self.seen.notify_all()
        with self.seen:
            self.lines.append(None)  # EOF marker
            self.seen.notify_all()

    def wait_for(self, word: str, timeout: float = 120) -> bool:
        """True once a stderr line contains ``word``; False when the process ended first."""
        with self.seen:
            ok = self.seen.wait_for(lambda: any(word in (x or "") for x in self.lines) or None in self.lines,
                                    timeout)
            return ok and any(word in (x or "") for x in self.lines)

    def finish(self, timeout: float = 300) -> tuple[int, list[str], float]:
        rc = self.proc.wait(timeout)
        self.reader.join(timeout)
        return rc, [x for x in self.lines if x is not None], time.monotonic() - self.t0


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def assert_absent_or_complete(out: Path) -> dict | None:
    """The guarantee: ``out`` does not exist, or its manifest lists files that are all there and intact."""
    if not out.exists():
        return None
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["artifacts"], f"{out}: a manifest with no artifacts"
    for name, a in manifest["artifacts"].items():
        for f in [a, *a.get("extra_files", [])]:
            assert _sha(out / f["path"]) == f["sha256"], f"{out}: {f['path']} differs from its manifest"
    for report in ("report.md", "report.html"):
        assert (out / report).is_file(), f"{out}: {report} missing beside a manifest"
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name], f"{out}: temp files inside the output"
    return manifest


def assert_leftovers_named(out: Path) -> list[Path]:
    """Whatever a killed run leaves beside ``out`` is hidden and named as staging, never as output."""
    others = [p for p in out.parent.iterdir() if p.name != out.name and p.name.startswith(f".{out.name}.")]
    for p in others:
        assert LEFTOVER.fullmatch(p.name), f"unexpected leftover {p.name}"
    return others


def _artifact_hashes(manifest: dict) -> dict[str, str]:
    return {k: a["sha256"] for k, a in manifest["artifacts"].items()}


def _mount_tmpfs(path: Path, options: str) -> str | None:
    """Mount a tmpfs at ``path``; the reason when this machine does not allow it."""
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    return None if r.returncode == 0 else f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two conversions started at once into different dirs (the concurrency case, and the reference
    runs whose duration spreads the kill delays), with a third beside them writing onto a 64 kB tmpfs
    (the output needs ~120 kB): the disk-full case, sharing their wall time."""
    root = tmp_path_factory.mktemp("pair")
    full = tmp_path_factory.mktemp("full") / "mnt"
    no_mount = _mount_tmpfs(full, "size=64k")
    runs = [_Run(root / "a"), _Run(root / "b"), *([] if no_mount else [_Run(full / "out")])]
    results = [r.finish() for r in runs]
    yield root, results[:2], (no_mount, full, results[2:])
    if not no_mount:
        subprocess.run(["umount", str(full)], check=False)


def test_two_concurrent_conversions_do_not_interfere(pair):
    root, results, _ = pair
    for rc, lines, _ in results:
        assert rc == 0, "\n".join(lines[-5:])
    a, b = assert_absent_or_complete(root / "a"), assert_absent_or_complete(root / "b")
    assert a and b
    assert _artifact_hashes(a) == _artifact_hashes(b)  # deterministic artifacts, no cross-talk
    assert sorted(p.name for p in root.iterdir()) == ["a", "b"]  # no temp dirs left behind


def _kill_once(rng: random.Random, out: Path, duration: float, force: bool) -> tuple[str, float | None]:
    """One run killed with SIGKILL: at a uniform delay over the run, or (every other time) just as the
    targets start writing into staging, where the commit happens. Also returns the run's time when it
    finished before the kill (the machine got faster than the estimate)."""
    run = _Run(out, force=force)
    if rng.random() < 0.5:
        how = f"at {rng.uniform(0, duration):.2f}s"
        time.sleep(float(how[3:-1]))
    else:
        delay = rng.uniform(0, 0.08)
        how = f"{delay * 1000:.0f} ms after the first target line"
        run.wait_for("target")
        time.sleep(delay)
    finished = run.proc.poll() is not None
    run.proc.send_signal(signal.SIGKILL)
    rc, _, seconds = run.finish()
    return how, (seconds if finished and rc == 0 else None)


def _kill_series(tmp_path: Path, pair, n: int) -> None:
    root, results, _ = pair
    duration = min(r[2] for r in results) * 2 / 3  # those ran three at a time on (at least) two cores
    reference = _artifact_hashes(assert_absent_or_complete(root / "a"))
    rng = random.Random(SEED)
    for i in range(n):
        out = tmp_path / f"out{i}"
        force = i % 2 == 1  # every other run replaces a complete old output
        if force:
            shutil.copytree(root / "a", out)
        how, took = _kill_once(rng, out, duration, force)
        duration = min(duration, took or duration)  # keep the delays spread over a real run
        where = f"seed {SEED}, run {i}, killed {how}"
        m = assert_absent_or_complete(out)
        assert not force or m is not None, f"{where}: --force lost the old output without a new one"
        if m is not None:
            assert _artifact_hashes(m) == reference, where
        assert_leftovers_named(out)
        print(f"ok: {where}: {'complete' if m else 'absent'}", flush=True)
    # A rerun with --force over the last one succeeds, is whole, and sweeps the dead runs' staging.
    rc, lines, _ = _Run(out, force=True).finish()
    assert rc == 0, "\n".join(lines[-5:])
    assert _artifact_hashes(assert_absent_or_complete(out)) == reference
    assert assert_leftovers_named(out) == []


def test_sigkill_at_random_points_leaves_nothing_half_written(tmp_path, pair):
    _kill_series(tmp_path, pair, 2)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # 50 conversions: ~10 min on two idle cores, more on a busy machine
def test_sigkill_at_random_points_50_in_a_row(tmp_path, pair):
    _kill_series(tmp_path, pair, 50)


def test_sigint_prints_one_line_exits_130_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    run = _Run(out)
    assert run.wait_for("✓ pass"), "the run ended before its passes"
    time.sleep(random.Random(SEED).uniform(0, 0.15))  # in the passes or while targets write staging
    run.proc.send_signal(signal.SIGINT)
    rc, lines, _ = run.finish()
    assert rc == 130, f"seed {SEED}: rc {rc}: " + "\n".join(lines[-5:])
    last = lines[-1]
    assert last in (f"forgeml: interrupted; nothing was written to {out}", f"forgeml: interrupted; {out} is complete")
    assert not [x for x in lines if "Traceback" in x]
    if "nothing" in last:
        assert not out.exists()
    else:
        assert assert_absent_or_complete(out)
    assert list(tmp_path.iterdir()) in ([], [out])  # staging removed


def test_disk_full_gives_one_line_and_nothing_partial(pair):
    no_mount, mnt, results = pair[2]
    if no_mount:
        pytest.skip(no_mount + "; a loop file needs mount too")
    (rc, err, _), out = results[0], mnt / "out"
    assert rc == 2, "\n".join(err[-5:])
    assert err[-1].startswith(f"forgeml: error: output directory {out}: cannot write ") and "No space left" in err[-1]
    assert not [x for x in err if "Traceback" in x]
    assert list(mnt.iterdir()) == []  # no output, no staging


def test_read_only_output_gives_one_line_and_nothing_partial(tmp_path):
    mnt = tmp_path / "mnt"
    no_mount = _mount_tmpfs(mnt, "size=1m,ro")
    if no_mount:
        pytest.skip(no_mount)
    try:
        out = mnt / "out"
        r = subprocess.run(_cmd(out), capture_output=True, text=True, cwd=tmp_path)
        left = list(mnt.iterdir())
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"forgeml: error: output directory {out}: cannot write in {mnt} (read-only file system); nothing was written"]
    assert left == []


def test_stale_staging_of_a_dead_run_is_swept_but_a_live_ones_is_not(tmp_path):
    final = tmp_path / "out"
    live = StagedDir(final)  # this process, alive, holding its lock
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.forgeml-staging-{int(dead.stdout)}-0123abcd"
    stale.mkdir()
    (stale / "manifest.json").write_text("{}")  # even a staging dir that got as far as its manifest
    unrelated = tmp_path / ".other.forgeml-staging-1-00000000"
    unrelated.mkdir()
    assert sweep_stale(final) == [stale]
    assert live.path.is_dir() and unrelated.is_dir() and not stale.exists()
    second = StagedDir(final)  # a concurrent run for the same dir never deletes the first one's staging
    assert live.path.is_dir() and second.path != live.path
    (live.path / "f").write_text("1")
    live.commit()
    second.discard()
    assert (final / "f").read_text() == "1" and not second.path.exists()


def test_commit_replaces_an_old_output_in_one_step(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old").write_text("old")
    s = StagedDir(final)
    (s.path / "new").write_text("new")
    s.commit()
    assert [p.name for p in final.iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
