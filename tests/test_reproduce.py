"""`forgeml reproduce` of API runs: configs rebuilt with their types, paths read against the run's cwd."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import forgeml
from forgeml.errors import InputError
from forgeml.pipeline.run import ToleranceOverrides
from forgeml.pipeline.reproduce import reproduce
from forgeml.targets.tensorrt.target import TensorRTConfig, TrtProfile
from forgeml.pipeline.provenance import _plain, from_plain


def test_from_plain_rebuilds_nested_dataclasses_tuples_and_paths(tmp_path):
    from forgeml.passes.precision.quantize import Int8DynamicConfig
    from forgeml.passes.precision.base import BudgetConfig

    q = Int8DynamicConfig(op_types=("MatMul",), budget=BudgetConfig(min_cosine=0.9, fallback=False))
    back = from_plain(Int8DynamicConfig, _plain(q))
    assert back == q and isinstance(back.budget, BudgetConfig) and isinstance(back.op_types, tuple)
    tol = ToleranceOverrides(atol=1e-3, quantized=ToleranceOverrides(min_cosine=0.95))
    assert from_plain(ToleranceOverrides, _plain(tol)) == tol
    trt = TensorRTConfig(profiles=(TrtProfile("x", (1, 3), (2, 3), (4, 3)),), timing_cache=Path("cache.bin"))
    back = from_plain(TensorRTConfig, _plain(trt), base=tmp_path)
    assert back.profiles == trt.profiles and back.timing_cache == tmp_path / "cache.bin"
    with pytest.raises(InputError, match="no field"):
        from_plain(BudgetConfig, {"min_cosine": 0.9, "nonsense": 1})


def test_reproduce_a_quantized_api_run_from_another_cwd(tmp_path, monkeypatch):
    first = forgeml.convert("zoo:mlp",
                            targets=["onnx"],
                            out_dir=tmp_path / "first",
                            parity=forgeml.ParityOptions(localize="never", batches=1),
                            quantize=forgeml.QuantizeOptions("int8", max_cosine_drop=0.02))
    assert first.ok, first.errors
    run = first.manifest["run"]
    assert run["localize"] == "never" and run["passes"][-1]["config"]["budget"]["min_cosine"] == pytest.approx(0.98)
    cwd = os.getcwd()
    monkeypatch.chdir(tmp_path)  # the rerun must not depend on (or change) the caller's directory
    r = reproduce(first.out_dir / "manifest.json", tmp_path / "again")
    assert os.getcwd() == str(tmp_path) != cwd
    assert r["how"] == "run record (API)" and r["ok"], r
    assert r["artifacts"]["onnx"]["status"] in ("identical", "equivalent")
    new = json.loads((tmp_path / "again" / "manifest.json").read_text())["run"]
    assert new["passes"] == run["passes"] and new["tolerance"] == run["tolerance"]
    assert new["quantize"] == "int8" and new["localize"] == "never"


def test_reproduce_refuses_an_api_run_with_its_own_inputs(tmp_path, zoo_runs):
    base = zoo_runs("mlp")
    manifest = dict(base.manifest)
    manifest["user_inputs"] = {"batches": 1, "sha256": "0" * 64}
    p = tmp_path / "m" / "manifest.json"
    p.parent.mkdir()
    p.write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="its own parity inputs"):
        reproduce(p, tmp_path / "again")
