"""The CLI: exit codes, one-line errors, nothing half-written, and a fast --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from forgeml.cli.app import main


def _run(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(err: str, *needles: str):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("forgeml: error:"), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _no_leftovers(parent):
    assert not [p for p in os.listdir(parent) if ".tmp-" in p or "-old-" in p or ".forgeml-staging-" in p]


def test_convert_zoo_cnn(tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, _ = _run(capsys, "convert", "zoo:cnn", "--to", "onnx,safetensors", "-o", str(out))
    assert rc == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["ok"] and set(m["artifacts"]) == {"onnx", "safetensors"}
    assert m["command"].startswith("forgeml convert zoo:cnn")
    assert (out / "report.md").is_file() and "PASS" in stdout
    _no_leftovers(tmp_path)


def test_existing_output_needs_force(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc, _, err = _run(capsys, "convert", "zoo:mlp", "-o", str(out))
    assert rc == 2
    _one_line_error(err, "already exists", "--force")
    assert os.listdir(out) == ["keep.txt"]
    rc, _, _ = _run(capsys, "convert", "zoo:mlp", "-o", str(out), "--force")
    assert rc == 0 and (out / "model.onnx").is_file() and not (out / "keep.txt").exists()
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("args,needles", [
    (["convert", "missing.onnx"], ["missing.onnx", "no such file"]),
    (["convert", "zoo:nope"], ["unknown zoo model 'nope'", "cnn"]),
    (["convert", "zoo:mlp", "--to", "onnx,bogus"], ["unknown target", "bogus"]),
    (["convert", "zoo:mlp", "--passes", "check,bogus"], ["unknown pass 'bogus'"]),
    (["convert", "model.xyz"], ["no such file"]),
    (["convert", "python:nomodule"], ["python:module:function"]),
    (["inspect", "nothing.onnx"], ["no such file"]),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, needles):
    out = tmp_path / "out"
    extra = ["-o", str(out)] if args[0] == "convert" else []
    rc, _, err = _run(capsys, *args, *extra)
    assert rc == 2
    _one_line_error(err, *needles)
    assert not out.exists()
    _no_leftovers(tmp_path)


def test_corrupt_onnx_source(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    rc, _, err = _run(capsys, "convert", str(bad), "-o", str(tmp_path / "out"))
    assert rc == 2
    _one_line_error(err, "bad.onnx", "not a valid ONNX model")
    assert not (tmp_path / "out").exists()


def test_inputs_of_the_wrong_shape_or_dtype(tmp_path, capsys):
    npz = tmp_path / "x.npz"
    np.savez(npz, x=np.zeros((4, 7), np.float32))
    rc, _, err = _run(capsys, "convert", "zoo:mlp", "-o", str(tmp_path / "out"), "--inputs", str(npz))
    assert rc == 2
    _one_line_error(err, "'x'", "(4, 7)", "(4, 20)")
    np.savez(npz, x=np.zeros((4, 20), np.int32))
    rc, _, err = _run(capsys, "convert", "zoo:mlp", "-o", str(tmp_path / "out"), "--inputs", str(npz))
    assert rc == 2
    _one_line_error(err, "dtype int32", "float32")
    np.savez(npz, y=np.zeros((4, 20), np.float32))
    rc, _, err = _run(capsys, "convert", "zoo:mlp", "-o", str(tmp_path / "out"), "--inputs", str(npz))
    assert rc == 2
    _one_line_error(err, "missing ['x']")
    assert not (tmp_path / "out").exists()
    _no_leftovers(tmp_path)


def test_parity_failure_exits_1_and_still_writes_the_report(tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, _ = _run(capsys, "convert", "zoo:cnn", "--to", "onnx,safetensors", "-o", str(out),
                         "--atol", "1e-12", "--rtol", "0")
    assert rc == 1
    m = json.loads((out / "manifest.json").read_text())
    assert m["ok"] is False
    failing = [s["name"] for s in m["stages"] if not s["parity"]["passed"]]
    assert "torch->onnx" in failing and "safetensors" not in failing  # safetensors reproduces torch exactly
    assert "FAIL" in (out / "report.md").read_text() and "FAIL" in stdout


def test_debug_shows_the_traceback(tmp_path, capsys):
    rc, _, err = _run(capsys, "convert", "zoo:nope", "-o", str(tmp_path / "o"), "--debug")
    assert rc == 2 and "Traceback" in err


def test_help_is_instant_and_imports_no_framework():
    code = ("import sys; from forgeml.cli.app import main; rc = main(['--help']); "
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'tensorflow', 'numpy') if m in sys.modules]; "
            "print('HEAVY', heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr
    assert "convert" in r.stdout


def test_real_process_exit_codes(tmp_path):
    """Through the installed entry point, as a user runs it."""
    exe = [sys.executable, "-m", "forgeml"]
    r = subprocess.run(exe + ["convert", "zoo:nope", "-o", str(tmp_path / "o")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "unknown zoo model" in r.stderr
    r = subprocess.run(exe + ["convert"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = subprocess.run(exe + ["zoo", "list"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "zoo:cnn" in r.stdout and "zoo:transformer" in r.stdout


def test_inspect_onnx_and_safetensors(zoo_runs, capsys):
    result = zoo_runs("cnn")
    rc, out, _ = _run(capsys, "inspect", str(result.artifacts["onnx"].path), "--json")
    info = json.loads(out)
    assert rc == 0 and info["inputs"][0]["name"] == "x" and info["outputs"][0]["name"] == "logits"
    assert info["ops"]["Conv"] == 2 and info["parameters"] > 1000
    assert info["metadata"]["forgeml.source"] == "zoo:cnn"
    rc, out, _ = _run(capsys, "inspect", str(result.artifacts["safetensors"].path), "--json")
    info = json.loads(out)
    assert rc == 0 and info["metadata"]["format"] == "pt" and info["metadata"]["source"] == "zoo:cnn"
    names = {t["name"] for t in info["tensor_table"]}
    assert "conv1.weight" in names and "bn1.running_mean" in names
    rc, out, _ = _run(capsys, "inspect", str(result.artifacts["onnx"].path))
    assert rc == 0 and "Conv×2" in out


def test_inspect_corrupt_safetensors(tmp_path, capsys, zoo_runs):
    data = zoo_runs("mlp").artifacts["safetensors"].path.read_bytes()
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    rc, _, err = _run(capsys, "inspect", str(bad))
    assert rc == 2
    _one_line_error(err, "cut.safetensors")
    bad.write_bytes(b"\xff" * 64)
    rc, _, err = _run(capsys, "inspect", str(bad))
    assert rc == 2
    _one_line_error(err, "not a safetensors file")


def test_zoo_export_then_convert_the_file(tmp_path, capsys):
    stem = tmp_path / "mlp"
    rc, out, _ = _run(capsys, "zoo", "export", "mlp", "-o", str(stem))
    assert rc == 0 and (tmp_path / "mlp.pt2").is_file() and (tmp_path / "mlp.inputs.npz").is_file()
    rc, _, err = _run(capsys, "zoo", "export", "mlp", "-o", str(stem))
    assert rc == 2
    _one_line_error(err, "already exists")
    rc, _, _ = _run(capsys, "convert", str(tmp_path / "mlp.pt2"), "-o", str(tmp_path / "out"),
                    "--inputs", str(tmp_path / "mlp.inputs.npz"))
    assert rc == 0
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["stages"][0]["parity"]["batches"] == 5  # example + 3 random + the user's file


def test_output_that_would_swallow_the_cwd_or_the_source_is_refused(tmp_path, capsys, monkeypatch, zoo_runs):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("mine")
    rc, _, err = _run(capsys, "convert", "zoo:mlp", "-o", ".", "--force")
    assert rc == 2
    _one_line_error(err, "working directory")
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src = src_dir / "m.onnx"
    src.write_bytes(zoo_runs("mlp").artifacts["onnx"].path.read_bytes())
    rc, _, err = _run(capsys, "convert", str(src), "-o", str(src_dir), "--force")
    assert rc == 2
    _one_line_error(err, "the source")
    assert sorted(os.listdir(tmp_path)) == ["keep.txt", "src"] and os.listdir(src_dir) == ["m.onnx"]


def test_report_path_is_checked_before_the_run(tmp_path, capsys):
    rc, _, err = _run(capsys, "convert", "zoo:mlp", "-o", str(tmp_path / "out"), "--report",
                      str(tmp_path / "missing" / "r.html"))
    assert rc == 2
    _one_line_error(err, "--report")
    assert not (tmp_path / "out").exists()


def test_output_directory_gets_the_users_permissions(tmp_path, capsys):
    rc, _, _ = _run(capsys, "convert", "zoo:mlp", "-o", str(tmp_path / "out"))
    plain = tmp_path / "plain"
    plain.mkdir()
    assert rc == 0
    assert (tmp_path / "out").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_a_target_that_crashes_fails_alone(tmp_path, monkeypatch):
    """Not a TargetError but a bug-like exception: that target is recorded as failed, the others and
    the reports are still written, and the exit code is 2."""
    import forgeml
    from forgeml import targets

    class Crashing:
        name, Config = "crashing", None

        def build(self, ir, out_dir, ctx):
            raise ZeroDivisionError()

    monkeypatch.setitem(targets.TARGETS, "crashing", Crashing())
    result = forgeml.convert("zoo:mlp", targets=["crashing", "onnx"], out_dir=tmp_path / "o", passes=[])
    assert result.exit_code == 2 and not result.ok
    assert result.errors["crashing"].startswith("crashing: ZeroDivisionError")
    assert (tmp_path / "o" / "model.onnx").is_file() and (tmp_path / "o" / "report.html").is_file()
    assert result.manifest["errors"]["crashing"] == result.errors["crashing"]


@pytest.mark.parametrize("spec,needle", [("x:22Ox20:float32", "'22O'"), ("x:-3x20:float32", "'-3'"),
                                         ("x:4x20:complex", "unknown dtype")])
def test_bad_input_specs(tmp_path, capsys, spec, needle):
    rc, _, err = _run(capsys, "convert", "zoo:mlp", "-o", str(tmp_path / "o"), "--input", spec)
    assert rc == 2
    _one_line_error(err, needle)


def test_input_spec_is_refused_where_the_source_has_examples(tmp_path, capsys):
    rc, _, err = _run(capsys, "convert", "zoo:mlp", "-o", str(tmp_path / "o"), "--input", "x:4x20:float32")
    assert rc == 2
    _one_line_error(err, "--input is for sources without example inputs")
    assert not (tmp_path / "o").exists()


def test_the_api_checks_options_like_the_cli(tmp_path):
    import forgeml
    from forgeml.errors import InputError

    with pytest.raises(InputError, match="`quantize.synthetic_calibration` replaces `quantize.calibration`"):
        forgeml.convert("zoo:mlp", out_dir=tmp_path / "o", quantize=forgeml.QuantizeOptions(
            "int8-static", calibration=({"x": np.zeros((4, 16), np.float32)},), synthetic_calibration=True))
    with pytest.raises(InputError, match="unknown target"):
        forgeml.convert("zoo:mlp", out_dir=tmp_path / "o", targets=["onnx", "nope"])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args,needle", [
    (["--gguf-type", "q4_0"], "options for target(s) ['gguf']"),
    (["--to", "tflite", "--quantize", "int8-static", "--calib-synthetic"], "real data only"),
    (["--parity-batches", "-1"], None),
])
def test_options_that_would_be_ignored_or_fail_late_are_refused_up_front(tmp_path, capsys, args, needle):
    rc, _, err = _run(capsys, "convert", "zoo:mlp", "-o", str(tmp_path / "o"), *args)
    assert rc == 2 and "Traceback" not in err
    if needle:
        _one_line_error(err, needle)
    assert not (tmp_path / "o").exists()


def test_parity_of_models_that_do_not_fit_is_bad_input(capsys):
    rc, _, err = _run(capsys, "parity", "zoo:cnn", "zoo:mlp")
    assert rc == 2
    _one_line_error(err, "B (zoo:mlp) failed on the inputs")


def test_scan_of_an_empty_or_missing_pickle(tmp_path, capsys):
    empty = tmp_path / "e.pkl"
    empty.write_bytes(b"")
    rc, out, _ = _run(capsys, "scan", str(empty))
    assert rc == 1 and "empty" in out
    rc, _, err = _run(capsys, "scan", str(tmp_path))
    assert rc == 2
    _one_line_error(err, "not a file")
