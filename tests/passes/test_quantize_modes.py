"""--quantize end to end: every mode from the CLI and the API on the zoo, refusals, calibration errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import forgeml
from forgeml.cli.app import main
from forgeml.errors import InputError
from forgeml.ir import Signature, TensorSpec
from forgeml.passes.modes import MODES, quantize_pipeline
from forgeml.parity.inputs import fit_calibration, load_calibration

PROFILE = {"fp16": "fp16", "int8": "int8", "int8-static": "int8", "int4": "int4"}
LAST_PASS = {"fp16": "fp16", "int8": "int8-dynamic", "int8-static": "int8-static", "int4": "int4"}


def _quantized_stages(manifest: dict, mode: str) -> list[dict]:
    names = [s["name"] for s in manifest["stages"]]
    assert LAST_PASS[mode] in names
    return manifest["stages"][names.index(LAST_PASS[mode]):]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer"])
def test_every_mode_from_the_api(tmp_path, name):
    for mode in MODES:
        result = forgeml.convert(f"zoo:{name}",
                                 targets=["onnx"],
                                 out_dir=tmp_path / mode,
                                 parity=forgeml.ParityOptions(batches=2),
                                 quantize=forgeml.QuantizeOptions(mode, synthetic_calibration=True))
        m = json.loads((result.out_dir / "manifest.json").read_text())
        assert result.ok, (name, mode, result.parity.table())
        assert m["quantize"] == mode and m["precision"] == PROFILE[mode]
        for stage in _quantized_stages(m, mode):  # the precision pass and the onnx target
            assert stage["parity"]["profile"] == PROFILE[mode] and stage["parity"]["reference"].startswith("torch")
            row = stage["parity"]["rows"][0]
            assert row["passed"] and row["cosine"] > 0.98
        details = next(s for s in m["stages"] if s["name"] == LAST_PASS[mode])["details"]
        assert details["steps"][-1]["passed"] and "settings" in details
        if mode == "int8-static":  # calibrated on synthetic inputs: flagged in bold in both reports
            assert any("NOT representative" in w for w in m["warnings"])
            assert "**WARNING: int8-static was calibrated on synthetic" in (result.out_dir / "report.md").read_text()
            assert "<strong>WARNING: int8-static was calibrated on synthetic" in (
                result.out_dir / "report.html").read_text()
        else:
            assert "warnings" not in m


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_from_the_cli(tmp_path, mode, capsys):
    out = tmp_path / "out"
    args = ["convert", "zoo:mlp", "-o", str(out), "--quantize", mode, "--parity-batches", "1"]
    if mode == "int8-static":
        rng = np.random.default_rng(0)
        np.savez(tmp_path / "calib.npz", x=rng.normal(size=(16, 20)).astype(np.float32))
        args += ["--calib", str(tmp_path / "calib.npz")]
    assert main(args) == 0, capsys.readouterr().err
    m = json.loads((out / "manifest.json").read_text())
    assert m["ok"] and m["stages"][-1]["parity"]["profile"] == PROFILE[mode]
    assert "warnings" not in m  # real calibration data: nothing to flag
    assert "## Pass details" in (out / "report.md").read_text()


def test_forced_fallback_from_the_api_and_cli(tmp_path, capsys):
    """An ONNX source (reference: onnxruntime fp32) with one layer int8 hurts: --max-cosine-drop 1e-4."""
    import onnx
    from tests.passes.conftest import mlp_proto

    onnx.save(mlp_proto(outlier=30.0), tmp_path / "outlier.onnx")
    x = np.random.default_rng(5).normal(size=(8, 16)).astype(np.float32)
    plain = forgeml.convert(str(tmp_path / "outlier.onnx"), {"x": x}, targets=["onnx"], quantize="int8",
                            out_dir=tmp_path / "plain")
    plain_stage = next(s for s in plain.manifest["stages"] if s["name"] == "int8-dynamic")
    assert plain.ok and plain_stage["parity"]["rows"][0]["cosine"] < 0.9999  # plain int8 misses the budget

    result = forgeml.convert(str(tmp_path / "outlier.onnx"),
                             {"x": x},
                             targets=["onnx"],
                             out_dir=tmp_path / "tight",
                             quantize=forgeml.QuantizeOptions("int8", max_cosine_drop=1e-4))
    stage = next(s for s in result.manifest["stages"] if s["name"] == "int8-dynamic")
    d = stage["details"]
    # The costliest layer is kept first; how many more depends on the CPU's int8 kernels.
    assert d["kept_in_float"][0] == "fc2" and len(d["kept_in_float"]) < 3
    assert [s["passed"] for s in d["steps"]] == [False] * (len(d["steps"]) - 1) + [True]
    assert d["steps"][1]["added_nodes"] == ["fc2"] and d["steps"][1]["cosine_gain"] > 0
    # The pipeline judges the stage and the artifact by the same budget, on its own inputs.
    assert result.ok
    for st in result.manifest["stages"][-2:]:
        assert st["parity"]["tolerance"]["min_cosine"] == pytest.approx(0.9999)
        assert st["parity"]["rows"][0]["cosine"] >= 0.9999
    assert "`fc2`" in (result.out_dir / "report.md").read_text()
    html = (result.out_dir / "report.html").read_text()
    assert "<h2>Pass details</h2>" in html and "<code>fc2</code>" in html

    out = tmp_path / "cli"
    code = main(["convert", str(tmp_path / "outlier.onnx"), "--input", "x:8x16:float32", "-o", str(out),
                 "--quantize", "int8", "--max-cosine-drop", "1e-4"])
    assert code == 0, capsys.readouterr().err
    m = json.loads((out / "manifest.json").read_text())
    assert next(s for s in m["stages"] if s["name"] == "int8-dynamic")["details"]["kept_in_float"][0] == "fc2"


def test_unreachable_budget_exits_2(tmp_path, capsys):
    import onnx
    from tests.passes.conftest import mlp_proto

    onnx.save(mlp_proto(outlier=30.0), tmp_path / "outlier.onnx")
    code = main(["convert", str(tmp_path / "outlier.onnx"), "--input", "x:8x16:float32", "-o", str(tmp_path / "o"),
                 "--quantize", "int8", "--max-cosine-drop", "1e-12"])
    err = capsys.readouterr().err
    assert code == 2 and "budget" in err and "is not met" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_int8_static_without_calibration_is_refused(capsys):
    assert main(["convert", "zoo:mlp", "-o", "/nonexistent/x", "--quantize", "int8-static"]) == 2
    err = capsys.readouterr().err
    assert "needs calibration data" in err and "--calib-synthetic" in err and "Traceback" not in err
    with pytest.raises(InputError, match="needs calibration data"):
        quantize_pipeline("int8-static")
    assert [p.name for p in quantize_pipeline("int8-static", calib_synthetic=True)] == ["int8-static"]


def test_unknown_mode_and_bad_budget():
    with pytest.raises(InputError, match="unknown mode"):
        quantize_pipeline("int3")
    with pytest.raises(InputError, match="`quantize.max_cosine_drop`"):
        quantize_pipeline("int8", max_cosine_drop=2.0)
    with pytest.raises(InputError, match="`quantize.min_top1`"):
        quantize_pipeline("int8", min_top1=1.5)
    assert main(["convert", "zoo:mlp", "--min-top1", "0.9"]) == 2  # needs --quantize


SIG = Signature((TensorSpec("x", ("batch", 20), "float32"), TensorSpec("ids", ("batch", 4), "int64")),
                (TensorSpec("y", ("batch", 3), "float32"),))


def _batch(n=4, **over):
    b = {"x": np.zeros((n, 20), np.float32), "ids": np.zeros((n, 4), np.int64)}
    b.update(over)
    return b


@pytest.mark.parametrize("batch, message", [
    ({"x": np.zeros((4, 20), np.float32)}, "no data for model input 'ids'"),
    (_batch(x=np.zeros((4, 20), np.float64)), "input 'x' has dtype float64 but the model expects float32"),
    (_batch(x=np.zeros((4, 21), np.float32)), r"input 'x' has shape \(4, 21\)"),
    (_batch(n=0), "input 'x' is empty"),
    (_batch(x=np.full((4, 20), np.nan, np.float32)), "input 'x' has 80 NaN/inf"),
    ({**_batch(), "z": np.zeros(3)}, "no input named 'z'"),
])
def test_bad_calibration_names_the_input(batch, message):
    with pytest.raises(InputError, match=message):
        fit_calibration([batch], SIG)


def test_calibration_regroups_to_a_fixed_batch():
    sig = Signature((TensorSpec("x", (2, 20), "float32"),), (TensorSpec("y", (2, 3), "float32"),))
    batches = fit_calibration([{"x": np.ones((1, 20), np.float32)} for _ in range(5)], sig)
    assert len(batches) == 2 and all(b["x"].shape == (2, 20) for b in batches)
    with pytest.raises(InputError, match="fixed batch of 2"):
        fit_calibration([{"x": np.ones((1, 20), np.float32)}], sig)


def test_calibration_file_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_calibration(tmp_path / "missing.npz")
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 20), np.float32))
    with pytest.raises(InputError, match="input 'x' is empty"):
        load_calibration(tmp_path / "empty.npz")
    bad = np.zeros((3, 20), np.float32)
    bad[1, 2] = np.inf
    np.savez(tmp_path / "nan.npz", x=bad)
    with pytest.raises(InputError, match="input 'x' has 1 NaN/inf"):
        load_calibration(tmp_path / "nan.npz")
    np.savez(tmp_path / "ok.npz", x=np.ones((3, 20), np.float32), ids=np.ones((3, 4), np.int64))
    assert len(load_calibration(tmp_path / "ok.npz")) == 3


def test_cli_calibration_missing_input_is_one_line(tmp_path, capsys):
    np.savez(tmp_path / "c.npz", features=np.ones((4, 20), np.float32))
    code = main(["convert", "zoo:mlp", "-o", str(tmp_path / "o"), "--quantize", "int8-static",
                 "--calib", str(tmp_path / "c.npz")])
    err = capsys.readouterr().err
    assert code == 2 and "no data for model input 'x'" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_centered_budget_and_calibrate_method_reach_the_passes():
    from forgeml.passes.precision.quantize import Int8DynamicPass, Int8StaticPass

    (p,) = quantize_pipeline("int8", min_centered_cosine=0.99)
    assert isinstance(p, Int8DynamicPass) and p.config.budget.min_centered_cosine == 0.99
    (s,) = quantize_pipeline("int8-static", calib_synthetic=True, calibrate_method="percentile")
    assert isinstance(s, Int8StaticPass) and s.config.calibrate_method == "percentile"
    with pytest.raises(InputError, match="`quantize.min_centered_cosine`"):
        quantize_pipeline("int8", min_centered_cosine=1.5)
    with pytest.raises(InputError, match="`quantize.calibrate_method`"):
        quantize_pipeline("int8-static", calib_synthetic=True, calibrate_method="kl")
    with pytest.raises(InputError, match="applies to int8-static"):
        quantize_pipeline("int8", calibrate_method="entropy")
    assert main(["convert", "zoo:mlp", "--min-centered-cosine", "0.99"]) == 2  # needs --quantize
    assert main(["convert", "zoo:mlp", "--calib-method", "entropy"]) == 2
