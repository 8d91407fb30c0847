"""A real two-node Ray cluster on this machine (`ray start --head` plus a second node with a `tensorrt`
resource, each with its own temp dir and ports): a tensorrt-tagged job runs only on the node that has
the resource, and a job whose worker is killed mid-conversion is retried and finishes.

Only this test's own Ray processes are stopped at the end (each `ray start --block` runs in its own
process group; `ray stop` would stop every Ray on the machine, other people's too)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from forgeml.batch import BatchOptions, run_batch

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], temp: Path, env: dict) -> subprocess.Popen:
    log = temp.with_suffix(".log")
    proc = subprocess.Popen(
        [RAY, "start", "--block", "--include-log-monitor=false", "--disable-usage-stats", f"--temp-dir={temp}",
         "--object-store-memory=80000000", f"--dashboard-agent-listen-port={_free_port()}", *args],
        env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 240
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            pytest.fail(f"ray start failed: {log.read_text()[-2000:]}")
        time.sleep(0.5)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM makes `ray start --block` stop the processes it started; then the group, to be sure."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # only this node's group: its own start_new_session
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def two_nodes():
    root = Path(tempfile.mkdtemp(prefix="fgt-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]))
    port, client_port = _free_port(), _free_port()
    procs = []
    try:
        procs.append(_start(["--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                             f"--dashboard-port={_free_port()}", f"--ray-client-server-port={client_port}"],
                            root / "h", env))
        procs.append(_start([f"--address=127.0.0.1:{port}", "--num-cpus=1", '--resources={"tensorrt": 1}'],
                            root / "n", env))
        yield f"127.0.0.1:{port}", f"ray://127.0.0.1:{client_port}"
    finally:
        for p in reversed(procs):
            _stop(p)
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def _kill_first_attempt(out: Path, job_id: str, killed: list, stop: threading.Event) -> None:
    """Wait for the job's running file, then SIGKILL the worker it names (once)."""
    marker = out / "records" / f"{job_id}.running.json"
    while not stop.is_set():
        try:
            info = json.loads(marker.read_text())
        except (OSError, ValueError):
            time.sleep(0.2)
            continue
        if info["attempt"] == 1:
            time.sleep(1.0)  # let it get into the conversion
            os.kill(info["pid"], signal.SIGKILL)
            killed.append(info["pid"])
            return
        time.sleep(0.2)


def test_resources_route_jobs_and_a_killed_worker_is_retried(two_nodes, tmp_path, monkeypatch):
    sleepy = Path(__file__).with_name("sleepy.py")
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(f"""
targets: [onnx]
parity_batches: 1
models:
  - src: zoo:mlp
    name: trt
    quantize: [none, int8]
    resources: {{custom: {{tensorrt: 1}}}}
  - src: python:{sleepy}:build
    name: sleepy
  - src: zoo:mlp
    name: huge
    resources: {{num_cpus: 8}}
""")
    monkeypatch.setenv("RAY_ADDRESS", two_nodes[0])
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    out = tmp_path / "out"
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_attempt, args=(out, "sleepy.onnx.fp32", killed, stop), daemon=True)
    killer.start()
    try:
        result = run_batch(jobs, out, BatchOptions(cluster="auto"))
    finally:
        stop.set()
    nodes = result.summary["cluster"]["nodes"]
    assert len(nodes) == 2
    trt_node = next(n["id"] for n in nodes if n["resources"].get("tensorrt"))
    by_id = {r.id: r for r in result.records}

    for jid in ("trt.onnx.fp32", "trt.onnx.int8"):
        assert by_id[jid].verdict == "PASS" and by_id[jid].node_id == trt_node, by_id[jid]

    sleepy_rec = by_id["sleepy.onnx.fp32"]
    assert killed, "the sleepy job never started"
    assert sleepy_rec.verdict == "PASS" and sleepy_rec.attempts == 2, sleepy_rec
    assert "WorkerCrashedError" in sleepy_rec.retried[0] and sleepy_rec.pid != killed[0]

    huge = by_id["huge.onnx.fp32"]  # reported at once, never queued
    assert huge.verdict == "UNSCHEDULABLE" and "CPU 8 (the most any node has is 1)" in huge.message
    assert result.exit_code == 2


def test_a_ray_client_address_runs_the_same_jobs(two_nodes, tmp_path, monkeypatch):
    """--cluster ray://HOST:PORT: the driver talks to the cluster through Ray Client."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("parity_batches: 1\nmodels:\n  - src: zoo:mlp\n    resources: {custom: {tensorrt: 1}}\n")
    result = run_batch(jobs, tmp_path / "out", BatchOptions(cluster=two_nodes[1]))
    nodes = result.summary["cluster"]["nodes"]
    (rec,) = result.records
    assert rec.verdict == "PASS" and rec.node_id == next(n["id"] for n in nodes if n["resources"].get("tensorrt"))
    assert result.summary["cluster"]["address"] == two_nodes[1]
