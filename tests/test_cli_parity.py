"""`forgeml parity A B`, `forgeml report diff`, `forgeml reproduce`, and the CI gating flags."""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import forgeml
from forgeml.cli.app import main


@pytest.fixture(scope="module")
def mlp(zoo_runs):
    return zoo_runs("mlp")  # zoo:mlp → onnx + safetensors, shared with the other tests of the session


def _json(capsys, argv: list[str]) -> tuple[int, dict]:
    capsys.readouterr()  # what fixtures printed is not this command's summary
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_parity_torch_source_vs_onnx_artifact(mlp, capsys, tmp_path):
    code, s = _json(capsys, ["parity", "zoo:mlp", str(mlp.out_dir / "model.onnx"), "--json",
                             "--report", str(tmp_path / "p.html")])
    assert code == 0 and s["ok"] and s["stages"][0]["passed"]
    assert s["stages"][0]["profile"] == "fp32"
    html = (tmp_path / "p.html").read_text()
    assert ">PASS<" in html and "model.onnx" in html


def test_parity_onnx_vs_safetensors_in_its_model(mlp, capsys):
    code, s = _json(capsys, ["parity", str(mlp.out_dir / "model.onnx"), str(mlp.out_dir / "model.safetensors"),
                             "--model", "zoo:mlp", "--json"])
    assert code == 0 and s["ok"]


def test_parity_fails_on_a_corrupted_artifact_and_says_which_output(mlp, capsys, tmp_path):
    proto = onnx.load(str(mlp.out_dir / "model.onnx"))
    big = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
    arr = numpy_helper.to_array(big).copy()
    arr.flat[0] += 3.0
    big.CopyFrom(numpy_helper.from_array(arr, big.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, str(bad))
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=np.random.default_rng(5).normal(size=(4, 20)).astype(np.float32))
    code, s = _json(capsys, ["parity", str(mlp.out_dir / "model.onnx"), str(bad), "--inputs", str(inputs), "--json"])
    assert code == 1 and not s["ok"]
    assert s["stages"][0]["failing"][0]["output"] == "logits"


def test_parity_rejects_models_that_share_no_signature(mlp, capsys, tmp_path):
    x = helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [1, 2])
    z = helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["out"])], "two", [x, y], [z])
    other = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(other))
    assert main(["parity", str(mlp.out_dir / "model.onnx"), str(other)]) == 2
    err = capsys.readouterr().err
    assert "do not share a signature" in err and "Traceback" not in err


def test_fail_on_warn_gates_a_pass_that_is_close_to_its_tolerance(mlp, capsys):
    onnx_path = str(mlp.out_dir / "model.onnx")
    code, s = _json(capsys, ["parity", "zoo:mlp", onnx_path, "--json"])
    max_abs = s and json.loads(json.dumps(mlp.manifest))["stages"][0]["parity"]["rows"][0]["max_abs"]
    if max_abs == 0:
        pytest.skip("torch and onnxruntime agree exactly on this machine; no headroom to gate on")
    atol = str(max_abs * 1.5)  # passes, but uses two thirds of the budget
    code, s = _json(capsys, ["parity", "zoo:mlp", onnx_path, "--atol", atol, "--rtol", "0", "--json"])
    assert code == 0 and s["ok"] and s["warnings"]
    code, s = _json(capsys, ["parity", "zoo:mlp", onnx_path, "--atol", atol, "--rtol", "0", "--json",
                             "--fail-on", "warn"])
    assert code == 1 and s["ok"] and s["exit_code"] == 1


def test_report_diff_names_removed_passes_and_size_change(mlp, capsys, tmp_path):
    other = forgeml.convert("zoo:mlp", targets=["onnx"], passes=["check"], out_dir=tmp_path / "b")
    code, d = _json(capsys, ["report", "diff", str(mlp.out_dir / "manifest.json"), str(other.out_dir), "--json"])
    assert code == 0
    assert {p["pass"] for p in d["passes"] if p.get("change") == "removed"} == {"simplify", "cleanup"}
    art = {a["target"]: a for a in d["artifacts"]}
    assert art["safetensors"]["change"] == "removed"
    assert art["onnx"]["bytes"] == {"old": mlp.manifest["artifacts"]["onnx"]["bytes"],
                                    "new": other.manifest["artifacts"]["onnx"]["bytes"]}
    assert main(["report", "diff", str(mlp.out_dir), str(other.out_dir)]) == 0
    assert "simplify: removed" in capsys.readouterr().out


def test_reproduce_an_api_run(mlp, capsys, tmp_path):
    code, r = _json(capsys, ["reproduce", str(mlp.out_dir / "manifest.json"), "-o", str(tmp_path / "again"), "--json"])
    assert r["how"] == "run record (API)"
    assert r["artifacts"]["onnx"]["status"] == "identical"
    # safetensors may differ in header key order only: then its outputs must match exactly
    st = r["artifacts"]["safetensors"]
    assert st["status"] == "identical" or (st["status"] == "equivalent" and st["max_abs"] == 0)
    assert code == (0 if r["ok"] else 1) and r["ok"]


@pytest.mark.slow
def test_reproduce_a_cli_run_from_its_command_line(tmp_path):
    first = tmp_path / "first"
    cmd = [sys.executable, "-m", "forgeml", "convert", "zoo:mlp", "--to", "onnx", "-o", str(first),
           "--report", str(tmp_path / "r.html")]
    subprocess.run(cmd, check=True, capture_output=True)
    manifest = json.loads((first / "manifest.json").read_text())
    assert shlex.split(manifest["command"])[:3] == ["forgeml", "convert", "zoo:mlp"]
    proc = subprocess.run([sys.executable, "-m", "forgeml", "reproduce", str(first / "manifest.json"), "--json"],
                          capture_output=True, text=True)
    r = json.loads(proc.stdout)
    assert proc.returncode == 0 and r["ok"] and r["how"] == "command line"
    assert r["artifacts"]["onnx"]["status"] == "identical"
    assert Path(r["new_dir"], "report.html").is_file()


@pytest.mark.parametrize("suffix", [".tflite", ".gguf"])
def test_other_artifact_kinds_fail_in_one_line_when_unreadable(mlp, capsys, tmp_path, suffix):
    bogus = tmp_path / f"bogus{suffix}"
    bogus.write_bytes(b"not a model")
    assert main(["parity", str(mlp.out_dir / "model.onnx"), str(bogus)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("forgeml: error:") and "Traceback" not in err


def test_convert_localize_and_json_name_the_module_where_a_too_strict_tolerance_breaks(capsys, tmp_path):
    """atol 1e-12 with rtol 0: the export's float rounding fails; the summary names where it starts."""
    from models_zoo import ZOO

    code = main(["convert", "zoo:mlp", "-o", str(tmp_path / "o"), "--atol", "1e-12", "--rtol", "0",
                 "--localize", "--json"])
    s = json.loads(capsys.readouterr().out)
    assert code == 1 and s["exit_code"] == 1 and s["first_failure"] == "torch->onnx"
    d = s["stages"][0]["divergence"]
    modules = {n for n, _ in ZOO["mlp"].build().model.named_modules() if n}
    assert d["found"] and d["module"] in modules
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    full = manifest["stages"][0]["divergence"]
    assert full["method"] == "torch-hooks" and full["metrics"]["max_abs"] > 1e-12


# --- .tflite (TFLite interpreter) and .gguf (llama.cpp) sides ----------------------------------------

needs_tflite = pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("onnx2tf", "ai_edge_litert")),
                                  reason="needs forgeml[tflite] (onnx2tf, ai-edge-litert)")


@pytest.fixture(scope="module")
def cnn_tflite(tmp_path_factory):
    """`forgeml convert zoo:cnn --to onnx,tflite`: an NCHW model whose .tflite runs NHWC inside."""
    out = tmp_path_factory.mktemp("cnn-tflite") / "out"
    assert main(["convert", "zoo:cnn", "--to", "onnx,tflite", "-o", str(out)]) == 0
    return out


@pytest.mark.slow
@needs_tflite
def test_parity_tflite_vs_onnx_in_the_source_layout(cnn_tflite, capsys, tmp_path):
    from forgeml.pipeline.compare import compare

    tfl, onx = cnn_tflite / "model.tflite", cnn_tflite / "model.onnx"
    code, s = _json(capsys, ["parity", str(tfl), str(onx), "--json"])
    assert code == 0 and s["ok"] and s["stages"][0]["profile"] == "fp32"  # the file says it is the fp32 variant
    m = compare(str(tfl), str(onx)).to_json()
    assert m["source"]["kind"] == "tflite" and "TFLite interpreter" in m["source"]["framework"]
    x = m["signature"]["inputs"][0]
    assert x["shape"][1:] == [3, 32, 32]  # the .tflite's io map gives the source's NCHW signature back
    assert m["stages"][0]["parity"]["rows"][0]["max_abs"] < 1e-4
    # user data in the source layout goes through the io map too
    inputs = tmp_path / "x.npz"
    np.savez(inputs, **{x["name"]: np.random.default_rng(3).normal(size=x["shape"]).astype(np.float32)})
    code, s = _json(capsys, ["parity", str(onx), str(tfl), "--inputs", str(inputs), "--json"])
    assert code == 0 and s["ok"]


@pytest.mark.slow
@needs_tflite
def test_parity_tflite_catches_a_wrong_weight(cnn_tflite, capsys, tmp_path):
    proto = onnx.load(str(cnn_tflite / "model.onnx"))
    big = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
    arr = numpy_helper.to_array(big) * 1.5
    big.CopyFrom(numpy_helper.from_array(arr.astype(np.float32), big.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, str(bad))
    code, s = _json(capsys, ["parity", str(cnn_tflite / "model.tflite"), str(bad), "--json"])
    assert code == 1 and not s["ok"] and s["stages"][0]["failing"][0]["output"] == "logits"


@pytest.mark.slow
@needs_tflite
def test_parity_torch_source_vs_int8_tflite_by_its_profile(int8_run, capsys):
    """The int8 variant of a --quantize int8 run, against the torch source: judged as int8, and passing."""
    manifest = json.loads((int8_run / "manifest.json").read_text())
    tfl = int8_run / manifest["artifacts"]["tflite"]["path"]
    code, s = _json(capsys, ["parity", "zoo:transformer", str(tfl), "--json"])
    assert s["stages"][0]["profile"] == "int8"
    assert code == 0 and s["ok"]


@pytest.fixture(scope="module")
def llama_ggufs(tmp_path_factory):
    """zoo:tiny-llama written as f32 and q8_0 .gguf files straight from its checkpoint (no pipeline run)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'forgeml[gguf]')")
    pytest.importorskip("gguf", reason="needs forgeml[gguf]")
    from forgeml.targets.gguf.target import write_checkpoint
    from models_zoo.hf_models import SPECS, checkpoint

    out = tmp_path_factory.mktemp("gguf")
    ckpt = checkpoint(SPECS["tiny-llama"])
    for t in ("f32", "q8_0"):
        write_checkpoint(ckpt, out / f"{t}.gguf", t)
    return out


@pytest.mark.slow
def test_parity_hf_source_vs_gguf_in_llama_cpp(llama_ggufs, capsys):
    code, s = _json(capsys, ["parity", "zoo:tiny-llama", str(llama_ggufs / "f32.gguf"), "--json"])
    assert code == 0 and s["ok"] and s["stages"][0]["profile"] == "gguf-f32"  # from the file's header
    code, s = _json(capsys, ["parity", "zoo:tiny-llama", str(llama_ggufs / "q8_0.gguf"), "--json"])
    assert code == 0 and s["ok"] and s["stages"][0]["profile"] == "gguf-q8_0"
    # the q8_0 file's error is real: held to fp32's elementwise tolerance, it fails
    code, s = _json(capsys, ["parity", "zoo:tiny-llama", str(llama_ggufs / "q8_0.gguf"), "--profile", "fp32",
                             "--json"])
    assert code == 1 and s["stages"][0]["failing"][0]["output"] == "logits"


def test_fail_on_warn_prints_the_warning_and_a_fail_that_matches_the_exit(mlp, capsys):
    onnx_path = str(mlp.out_dir / "model.onnx")
    max_abs = mlp.manifest["stages"][0]["parity"]["rows"][0]["max_abs"]
    if max_abs == 0:
        pytest.skip("torch and onnxruntime agree exactly on this machine; no headroom to gate on")
    atol = str(max_abs * 1.5)
    capsys.readouterr()
    code = main(["parity", "zoo:mlp", onnx_path, "--atol", atol, "--rtol", "0", "--fail-on", "warn"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1
    assert "warning:" in out and "of atol" in out
    assert "FAIL (--fail-on warn: " in out and "PASS" not in out
    assert "centered" in out  # every metric the profile judges has a column
