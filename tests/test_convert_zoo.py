"""End to end on every zoo model: real torch vs real onnxruntime numbers, every stage in the manifest."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest
from safetensors.numpy import load_file

from models_zoo import ZOO
from tests.conftest import read_manifest

TORCH_ZOO = [name for name, m in ZOO.items() if m.kind == "torch" and name in ("mlp", "cnn", "transformer")]


@pytest.mark.parametrize("name", TORCH_ZOO)
def test_every_stage_passes_fp32(zoo_runs, name):
    result = zoo_runs(name)
    assert result.ok and result.exit_code == 0
    m = read_manifest(result.out_dir)
    assert m["ok"] is True
    assert [s["name"] for s in m["stages"]] == ["torch->onnx", "check", "simplify", "cleanup", "onnx", "safetensors"]
    for stage in m["stages"]:
        par = stage["parity"]
        assert par["passed"] and par["profile"] == "fp32" and par["reference"].startswith("torch ")
        assert par["batches"] == 4  # example + 3 seeded random batches
        for row in par["rows"]:
            assert row["max_abs"] < 1e-4, (stage["name"], row)
            assert row["cosine"] > 0.99999
            assert "centered_cosine" in row and "top1" in row


@pytest.mark.parametrize("name", TORCH_ZOO)
def test_manifest_describes_artifacts(zoo_runs, name):
    result = zoo_runs(name)
    m = read_manifest(result.out_dir)
    for entry in m["artifacts"].values():
        data = (result.out_dir / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["bytes"]
    assert m["source"]["kind"] == "torch" and m["source"]["ref"] == f"zoo:{name}"
    assert len(m["source"]["sha256"]) == 64
    assert m["source"]["route"] == "dynamo"
    assert {"onnx", "onnxruntime", "torch", "onnxsim"} <= set(m["tools"])
    assert m["opset"] >= 17
    passes = [s for s in m["stages"] if s["kind"] == "pass"]
    for p in passes:
        assert set(p["changes"]) >= {"nodes_before", "nodes_after", "bytes_before", "bytes_after", "modified"}
        assert isinstance(p["config"], dict)
    report = (result.out_dir / "report.md").read_text()
    assert "PASS" in report and "| torch->onnx (fp32) | converter | logits |" in report


def test_onnx_artifact_computes_what_torch_computes(zoo_runs):
    """Independent of the pipeline's own parity code: load the file, run it, compare with torch."""
    import onnxruntime as ort
    import torch

    result = zoo_runs("cnn")
    build = ZOO["cnn"].build()
    x = np.random.default_rng(42).normal(size=(2, 3, 32, 32)).astype(np.float32)
    sess = ort.InferenceSession(str(result.artifacts["onnx"].path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"x": x})[0]
    with torch.no_grad():
        want = build.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
    meta = {p.key: p.value for p in onnx.load(str(result.artifacts["onnx"].path)).metadata_props}
    assert meta["forgeml.source"] == "zoo:cnn"


def test_safetensors_holds_source_parameter_names(zoo_runs):
    result = zoo_runs("cnn")
    build = ZOO["cnn"].build()
    tensors = load_file(str(result.artifacts["safetensors"].path))
    state = build.model.state_dict()
    assert set(tensors) == set(state)
    for k, v in state.items():
        np.testing.assert_array_equal(tensors[k], v.numpy())


def test_artifacts_are_byte_identical_across_runs(zoo_runs, tmp_path):
    import forgeml

    first = zoo_runs("mlp")
    again = forgeml.convert("zoo:mlp", targets=["onnx", "safetensors"], out_dir=tmp_path / "again")
    for name in ("onnx", "safetensors"):
        assert first.artifacts[name].path.read_bytes() == again.artifacts[name].path.read_bytes(), name


def test_dynamic_batch_checks_other_batch_sizes(tmp_path):
    import forgeml

    result = forgeml.convert("zoo:transformer",
                             targets=["onnx"],
                             out_dir=tmp_path / "o",
                             passes=["check"],
                             options=forgeml.ImportOptions(dynamic_batch=True))
    assert result.ok
    assert result.manifest["signature"]["inputs"][0]["shape"] == ["batch", 16]
    # The example has batch 2; the random batches must have used 3, 4, 5 and still passed.
    import onnxruntime as ort

    sess = ort.InferenceSession(str(result.artifacts["onnx"].path), providers=["CPUExecutionProvider"])
    ids = np.random.default_rng(0).integers(0, 100, size=(7, 16)).astype(np.int64)
    assert sess.run(None, {"input_ids": ids})[0].shape == (7, 5)


def test_static_export_rejects_other_batch_sizes(zoo_runs):
    """Without --dynamic-batch the batch size is fixed and the signature says so."""
    m = zoo_runs("mlp").manifest
    assert m["signature"]["inputs"][0]["shape"] == [4, 20]


def test_onnx_external_data_when_configured(tmp_path):
    """The >2 GB path, forced on a small model: weights in model.onnx.data, parity still exact."""
    from forgeml.converters import ImportOptions
    from forgeml.pipeline.run import PipelineConfig, run
    from forgeml.pipeline.sources import resolve
    from forgeml.targets.onnx.target import OnnxConfig

    config = PipelineConfig(targets=("onnx",), passes=(), import_options=ImportOptions(),
                            target_configs={"onnx": OnnxConfig(external_data="always")})
    result = run(resolve("zoo:cnn"), config, tmp_path / "o")
    assert result.ok
    entry = result.manifest["artifacts"]["onnx"]
    assert entry["extra_files"][0]["path"] == "model.onnx.data"
    data = tmp_path / "o" / "model.onnx.data"
    big = {name for name, v in result.ir.model.graph.initializers.items() if v.const_value.nbytes >= 1024}
    assert big and data.stat().st_size >= sum(
        result.ir.model.graph.initializers[n].const_value.nbytes for n in big)
    onnx_model = onnx.load(str(tmp_path / "o" / "model.onnx"), load_external_data=False)
    assert {t.name for t in onnx_model.graph.initializer if t.external_data} == big
    assert "forgeml.source" not in result.ir.model.metadata_props  # the target did not touch the IR
