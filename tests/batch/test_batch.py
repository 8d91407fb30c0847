"""`forgeml batch` end to end on real conversions: in-process (`--cluster none`), on the embedded Ray
instance (`local`, the default) with the same verdicts and byte-identical artifacts, summaries a CI
reads, and `--resume`."""

from __future__ import annotations

import json
import shutil
import textwrap
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from forgeml.batch import BatchOptions, run_batch

JOBS = """
    targets: [onnx]
    parity_batches: 1
    models:
      - src: zoo:mlp
        targets: [onnx, safetensors]
      - src: zoo:cnn
        quantize: [int8]
      - src: zoo:cnn
        name: cnn-strict      # a tolerance no fp32 export meets: a parity failure, a result like any other
        atol: 1.0e-12
        rtol: 0
    """
IDS = ["mlp.onnx.fp32", "mlp.safetensors.fp32", "cnn.onnx.int8", "cnn-strict.onnx.fp32"]


@pytest.fixture(scope="module")
def jobs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("batch") / "jobs.yaml"
    path.write_text(textwrap.dedent(JOBS))
    return path


@pytest.fixture(scope="module")
def in_process(jobs_file, tmp_path_factory):
    """The batch run in this process, one job after another, through the CLI (--json)."""
    import contextlib
    import io

    from forgeml.cli.app import main

    out = tmp_path_factory.mktemp("none") / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["batch", str(jobs_file), "--cluster", "none", "-o", str(out), "--json"])
    return out, code, json.loads(stdout.getvalue())


def _summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_in_process_batch_verdicts_summaries_and_exit_code(in_process):
    out, code, printed = in_process
    assert code == 1  # one parity failure
    assert printed["jobs"] == {"mlp.onnx.fp32": "PASS", "mlp.safetensors.fp32": "PASS", "cnn.onnx.int8": "PASS",
                               "cnn-strict.onnx.fp32": "FAIL"}
    s = _summary(out)
    assert [j["id"] for j in s["jobs"]] == IDS and s["exit_code"] == 1
    assert s["counts"]["PASS"] == 3 and s["counts"]["FAIL"] == 1
    for job in s["jobs"]:
        manifest = json.loads((out / job["out_dir"] / "manifest.json").read_text())
        assert [a["sha256"] for a in job["artifacts"]] == [a["sha256"] for a in manifest["artifacts"].values()]
        assert (out / job["report"]).is_file()
        assert job["attempts"] == 1 and job["node_id"] == "" and job["latency_ms"] > 0
    strict = s["jobs"][3]
    assert strict["message"].startswith("torch->onnx: logits")  # the first failing stage and output
    assert json.loads((out / "records" / "cnn.onnx.int8.json").read_text())["precision"] == "int8"
    assert not list((out / "records").glob("*.running.json"))

    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "1", "0")
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["cnn-strict.onnx.fp32"]
    html = (out / "summary.html").read_text()
    assert 'href="jobs/cnn.onnx.int8/report.html"' in html and html.count("<tr>") == 5
    assert "| cnn-strict.onnx.fp32 | FAIL |" in (out / "summary.md").read_text()


def test_embedded_ray_gives_the_same_verdicts_and_bytes(jobs_file, in_process, tmp_path):
    """The default cluster: Ray started inside the process, a fresh worker per job, torn down after."""
    out_ray = tmp_path / "ray"
    result = run_batch(jobs_file, out_ray, BatchOptions(cluster="local"))
    reference = {j["id"]: j for j in _summary(in_process[0])["jobs"]}
    assert result.exit_code == 1
    assert [r.id for r in result.records] == IDS
    for r in result.records:
        ref = reference[r.id]
        assert r.verdict == ref["verdict"], r.id
        assert [(a.path, a.sha256) for a in r.artifacts] == [(a["path"], a["sha256"]) for a in ref["artifacts"]], r.id
        assert r.node_id and r.attempts == 1
        threads = json.loads((out_ray / r.out_dir / "manifest.json").read_text())["machine"]["threads"]
        assert threads.get("OMP_NUM_THREADS") == "1" and threads.get("FORGEML_THREADS") == "1"  # one CPU each
    import os

    pids = [r.pid for r in result.records]
    assert len(set(pids)) == len(pids) and os.getpid() not in pids  # max_calls=1: a fresh worker per job
    assert result.summary["cluster"]["kind"] == "local" and len(result.summary["cluster"]["nodes"]) == 1
    import ray

    assert not ray.is_initialized()  # torn down at exit
    assert not (out_ray / ".ray").exists() and not list((out_ray / "records").glob("*.running.json"))


def test_resume_skips_passed_jobs_and_reruns_failed_ones(in_process, jobs_file, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(in_process[0], out)
    result = run_batch(jobs_file, out, BatchOptions(cluster="none", resume=True))
    kept = {r.id: r.resumed for r in result.records}
    assert kept == {"mlp.onnx.fp32": True, "mlp.safetensors.fp32": True, "cnn.onnx.int8": True,
                    "cnn-strict.onnx.fp32": False}
    assert result.summary["resumed"] == 3 and result.exit_code == 1


def test_resume_reruns_a_job_whose_inputs_or_artifacts_changed(tmp_path):
    extra = tmp_path / "extra.npz"
    np.savez(extra, x=np.full((4, 20), 0.5, np.float32))
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("parity_batches: 0\nmodels:\n  - src: zoo:mlp\n    inputs: [extra.npz]\n")
    out = tmp_path / "out"
    first = run_batch(jobs, out, BatchOptions(cluster="none"))
    assert first.ok and not first.records[0].resumed

    assert run_batch(jobs, out, BatchOptions(cluster="none", resume=True)).records[0].resumed
    np.savez(extra, x=np.full((4, 20), -0.5, np.float32))  # new parity inputs: a new input hash
    changed = run_batch(jobs, out, BatchOptions(cluster="none", resume=True)).records[0]
    assert not changed.resumed and changed.ok and changed.input_hash != first.records[0].input_hash
    (out / changed.artifacts[0].path).unlink()  # an artifact gone: the job is not done any more
    assert not run_batch(jobs, out, BatchOptions(cluster="none", resume=True)).records[0].resumed
