"""The job file: every mistake is one line naming the file, the line and the key (exit 2 from the CLI,
nothing run); expansion gives stable ids and input hashes that change exactly when an input does."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from forgeml.batch.cluster import Node, unschedulable
from forgeml.batch.jobs import expand
from forgeml.batch.spec import JobFileError, Resources, load, parse_memory


def _write(tmp_path, text: str, name: str = "jobs.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return p


BAD = [
    # (file text, line, what the message must say)
    ("""
     targets: [onnx]
     models:
       - src: zoo:mlp
         quantise: [int8]
     """, 4, "models[0].quantise: unknown key; did you mean 'quantize'?"),
    ("""
     models:
       - src: zoo:mlp
       - src: zoo:cnn
         quantize: [none, int3]
     """, 4, "models[1].quantize: unknown quantize mode 'int3'"),
    ("""
     targets: [onnx, tfilte]
     models: [{src: zoo:mlp}]
     """, 1, "targets: unknown target 'tfilte'; did you mean 'tflite'?"),
    ("""
     models:
       - name: a
         targets: onnx
     """, 2, "models[0].src: needs src"),
    ("""
     models:
       - src: missing/model.onnx
     """, 2, "models[0].src: missing/model.onnx: no such file or directory"),
    ("""
     models:
       - src: zoo:mlp
         quantize: int8-static
     """, 3, "models[0].quantize: int8-static needs calibration"),
    ("""
     models:
       - src: zoo:mlp
       - src: zoo:mlp
     """, 3, "two models are named 'mlp' (the other on line 2)"),
    ("""
     resources: {num_cpus: 1, memory: lots}
     models: [{src: zoo:mlp}]
     """, 1, "resources.memory: 'lots': expected bytes or a size like 2GiB"),
    ("""
     models:
       - src: zoo:mlp
         parity_batches: many
     """, 3, "models[0].parity_batches: expected int, got text 'many'"),
    ("""
     models:
       - src: zoo:mlp
         resources: {custom: {tensorrt: -1}}
     """, 3, "models[0].resources.custom.tensorrt: -1.0 is below 0"),
    ("""
     models:
       - src: zoo:mlp
        targets: [onnx]
     """, 3, "not valid YAML"),
    ("""
     models:
       - src: zoo:mlp
         input: [x:4x20:float99]
     """, 3, "models[0].input: 'x:4x20:float99': unknown dtype"),
    ("models: []\n", 1, "models: expected a non-empty list of models"),
    ("- src: zoo:mlp\n", 1, "expected a mapping of keys"),
    ("""
     models: [{src: zoo:mlp}]
     models: [{src: zoo:cnn}]
     """, 2, "key 'models' appears twice (first on line 1)"),
]


@pytest.mark.parametrize("text,line,says", BAD, ids=[b[2][:40] for b in BAD])
def test_a_bad_job_file_names_its_line_and_key(tmp_path, text, line, says):
    path = _write(tmp_path, text)
    with pytest.raises(JobFileError) as e:
        load(path)
    message = str(e.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert says in message, message
    assert "\n" not in message


def test_the_cli_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    from forgeml.cli.app import main

    path = _write(tmp_path, """
        targets: [onnx]
        models:
          - src: zoo:mlp
            quantize: [int3]
        """)
    out = tmp_path / "out"
    assert main(["batch", str(path), "--cluster", "none", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "jobs.yaml:4: models[0].quantize: unknown quantize mode 'int3'" in err.replace("\n", "")
    assert "Traceback" not in err
    assert not out.exists()


def test_a_non_empty_out_needs_resume_or_force(tmp_path, capsys):
    from forgeml.cli.app import main

    path = _write(tmp_path, "models: [{src: zoo:mlp}]\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["batch", str(path), "--cluster", "none", "-o", str(out)]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "pass --resume" in err and "--force" in err  # the API's field names shown as the CLI's flags
    assert main(["batch", str(path), "--cluster", "elsewhere", "-o", str(tmp_path / "o2")]) == 2
    assert "--cluster 'elsewhere': choose local, auto, none or ray://HOST:PORT" in capsys.readouterr().err


def test_expansion_ids_resources_and_input_hashes(tmp_path):
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.ones((4, 20), np.float32))
    text = """
        targets: [onnx, safetensors]
        quantize: [none, int8]
        resources: {num_cpus: 1, memory: 512MiB}
        target_resources: {tensorrt: {num_gpus: 1, custom: {tensorrt: 1}}}
        models:
          - zoo:mlp
          - src: zoo:cnn
            name: vision
            targets: [onnx, tensorrt]
            quantize: [int8-static]
            calibration: calib.npz
            resources: {num_cpus: 2}
        """
    jobs = expand(load(_write(tmp_path, text)))
    assert [j.id for j in jobs] == ["mlp.onnx.fp32", "mlp.onnx.int8", "mlp.safetensors.fp32", "mlp.safetensors.int8",
                                    "vision.onnx.int8-static", "vision.tensorrt.int8-static"]
    by_id = {j.id: j for j in jobs}
    assert by_id["mlp.onnx.fp32"].resources == Resources(num_cpus=1.0, num_gpus=0.0, memory=512 << 20)
    # defaults < target_resources < the model's own
    assert by_id["vision.tensorrt.int8-static"].resources == Resources(
        num_cpus=2.0, num_gpus=1.0, memory=512 << 20, custom=(("tensorrt", 1.0),))
    assert by_id["vision.onnx.int8-static"].model.calibration == str(calib.resolve())
    assert len({j.input_hash for j in jobs}) == len(jobs)

    again = {j.id: j.input_hash for j in expand(load(_write(tmp_path, text)))}
    assert again == {j.id: j.input_hash for j in jobs}  # stable across reads
    np.savez(calib, x=np.zeros((4, 20), np.float32))  # new calibration data: only its jobs change
    changed = {j.id for j in expand(load(_write(tmp_path, text))) if j.input_hash != by_id[j.id].input_hash}
    assert changed == {"vision.onnx.int8-static", "vision.tensorrt.int8-static"}


def test_parse_memory():
    assert parse_memory("2GiB") == 2 << 30
    assert parse_memory("512MB") == 512 * 10**6
    assert parse_memory(1000) == 1000
    with pytest.raises(ValueError):
        parse_memory("2 parsecs")


def test_unschedulable_names_what_no_node_has():
    nodes = [Node("a", "h", {"CPU": 2.0, "memory": 8.0 * 2**30}), Node("b", "h", {"CPU": 1.0, "tensorrt": 1.0})]
    assert unschedulable(Resources(1.0, 0.0, None, (("tensorrt", 1.0),)), nodes) is None
    assert unschedulable(Resources(2.0, 0.0, None), nodes) is None
    assert "tensorrt 2 (the most any node has is 1)" in unschedulable(Resources(1.0, 0.0, None, (("tensorrt", 2.0),)),
                                                                          nodes)
    assert "GPU 1 (no node has it)" in unschedulable(Resources(1.0, 1.0, None), nodes)
    # each resource exists somewhere, but never together on one node
    assert "no single node has CPU 2, tensorrt 1 together" in unschedulable(
        Resources(2.0, 0.0, None, (("tensorrt", 1.0),)), nodes)
