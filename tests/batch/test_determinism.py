"""Artifacts are a function of the job, not of where or in which process it ran.

- The same jobs run one after another in this process (``--cluster none``) and on the embedded Ray
  instance (a fresh worker per job, two at a time) give the same verdicts and byte-identical artifacts:
  two sklearn jobs in the default suite; Keras jobs (two tf2onnx conversions in one process: its name
  counter ran on from job to job) and the 40 jobs of ``bench/batch.py`` when slow tests run.
- Two processes with different hash seeds (and so different set orders and memory layouts) give
  byte-identical artifacts for every converter family and target kind: torch, TensorFlow, sklearn,
  ONNX files and Hugging Face checkpoints; onnx, safetensors, tflite, gguf; fp32, fp16, int8 dynamic,
  int8 static, int4.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.batch import MATRIX, job_file  # bench/batch.py's 40 jobs, written the way it writes them
from forgeml.batch import BatchOptions, run_batch

ROOT = Path(__file__).resolve().parents[2]

FEW = """
    parity_batches: 0
    models:
      - src: zoo:sk_breast_cancer
      - src: zoo:sk_iris
        quantize: [fp16]
    """

# two tf2onnx conversions in one process (its name counter ran on from one to the next) and a calibration
KERAS = """
    parity_batches: 1
    models:
      - src: zoo:keras_two_inputs
        quantize: [none, int8]
      - src: zoo:keras_cnn
        quantize: [int8-static]
        synthetic_calibration: true
    """

def _outcome(records) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    return {r.id: (r.verdict, [(a.path, a.sha256) for a in r.artifacts]) for r in records}


def _same_on_ray_as_in_process(jobs: Path, tmp_path: Path, expected_jobs: int) -> None:
    seq = run_batch(jobs, tmp_path / "none", BatchOptions(cluster="none"))
    par = run_batch(jobs, tmp_path / "ray", BatchOptions(cluster="local", max_parallel=2))
    assert len(seq.records) == expected_jobs
    assert all(r.artifacts for r in seq.records), [r.id for r in seq.records if not r.artifacts]
    a, b = _outcome(seq.records), _outcome(par.records)
    differ = sorted(k for k in a if a[k] != b[k])
    assert not differ, {k: (a[k], b[k]) for k in differ}
    assert all(r.node_id for r in par.records) and not any(r.node_id for r in seq.records)


def test_a_few_jobs_give_the_same_verdicts_and_bytes_in_process_and_on_ray(tmp_path):
    """skl2onnx lists opset imports in hash-seed order, and every Ray worker has its own hash seed."""
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(textwrap.dedent(FEW))
    _same_on_ray_as_in_process(jobs, tmp_path, 2)


@pytest.mark.slow
def test_keras_jobs_give_the_same_verdicts_and_bytes_in_process_and_on_ray(tmp_path):
    pytest.importorskip("tf2onnx")
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(textwrap.dedent(KERAS))
    _same_on_ray_as_in_process(jobs, tmp_path, 3)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 80 conversions: ~15 min on a busy 2-core machine, fresh worker imports included
def test_forty_jobs_give_the_same_verdicts_and_bytes_in_process_and_on_ray(tmp_path):
    """The issue's bar: zoo × targets × quantize, sequential vs the embedded default."""
    _same_on_ray_as_in_process(job_file(MATRIX, tmp_path), tmp_path, 40)


FAMILIES = """
    parity_batches: 0
    models:
      - src: zoo:mlp
        targets: [onnx, safetensors, tflite]
      - src: zoo:cnn
        quantize: [int8-static]
        synthetic_calibration: true
      - src: zoo:transformer
        quantize: [int4]
      - src: zoo:keras_cnn
        targets: [onnx, tflite]
        quantize: [none, int8]
      - src: zoo:keras_two_inputs
        quantize: [int8-static]
        synthetic_calibration: true
      - src: zoo:sk_breast_cancer
      - src: zoo:sk_digits
        quantize: [fp16]
      - src: tiny.onnx
        quantize: [none, int8]
      - src: zoo:tiny-gpt2
        targets: [gguf]
    """


def _tiny_onnx(path: Path) -> None:
    """A small ONNX file (MatMul, Add, Relu, Softmax) for the ONNX importer: weights from a seeded generator."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    w1 = numpy_helper.from_array(rng.normal(size=(12, 16)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(size=(16,)).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(size=(16, 4)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["z"]),
             helper.make_node("Softmax", ["z"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [w1, b1, w2])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _batch_in_a_process(jobs: Path, out: Path, hash_seed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    subprocess.run([sys.executable, "-m", "forgeml", "batch", str(jobs), "--cluster", "none", "-o", str(out),
                    "--json"], env=env, capture_output=True, text=True, timeout=1800, check=False)
    summary = json.loads((out / "summary.json").read_text())
    return {j["id"]: (j["verdict"], j["message"], [(a["path"], a["sha256"]) for a in j["artifacts"]])
            for j in summary["jobs"]}


@pytest.mark.slow
@pytest.mark.timeout(2400)  # 30 conversions, two processes: 7 min on a busy 2-core machine
def test_two_processes_write_the_same_bytes_for_every_converter_family(tmp_path):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(textwrap.dedent(FAMILIES))
    _tiny_onnx(tmp_path / "tiny.onnx")
    first = _batch_in_a_process(jobs, tmp_path / "a", "1")
    second = _batch_in_a_process(jobs, tmp_path / "b", "2")
    assert len(first) == 15
    produced = {k: v for k, v in first.items() if v[2]}
    assert len(produced) == len(first), {k: v[1] for k, v in first.items() if not v[2]}
    kinds = {Path(path).suffix for v in produced.values() for path, _ in v[2]}
    assert kinds == {".onnx", ".safetensors", ".tflite", ".gguf"}
    differ = sorted(k for k in first if first[k][0] != second[k][0] or first[k][2] != second[k][2])
    assert not differ, {k: (first[k], second[k]) for k in differ}
