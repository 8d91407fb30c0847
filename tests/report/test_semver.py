"""`forgeml report diff OLD NEW`'s semver verdict on real conversions: a renamed output is MAJOR, a
retrained head MINOR (found by rerunning both artifacts on shared inputs), a re-export PATCH."""

from __future__ import annotations

import json

import pytest

import forgeml
from forgeml.cli.app import main

torch = pytest.importorskip("torch")


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()


def _convert(model, out, output="scores"):
    x = torch.randn(2, 6, generator=torch.Generator().manual_seed(1))
    conv = forgeml.convert(model, x, targets=["onnx", "triton"], out_dir=out, passes=[],
                           options=forgeml.ImportOptions(output_names=[output]))
    assert conv.ok
    return conv.out_dir


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return _convert(_model(), tmp_path_factory.mktemp("rel") / "v1")


def _diff(capsys, old, new):
    capsys.readouterr()
    code = main(["report", "diff", str(old), str(new), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_renamed_output_is_major(base, tmp_path, capsys):
    code, d = _diff(capsys, base, _convert(_model(), tmp_path / "v2", output="logits"))
    assert d["semver"] == "MAJOR" and code == 4
    assert d["contract"] == ["output 'scores' renamed to 'logits'"]


def test_retrained_head_is_minor(base, tmp_path, capsys):
    m = _model()
    with torch.no_grad():
        m[2].weight.add_(0.05 * torch.randn(m[2].weight.shape, generator=torch.Generator().manual_seed(2)))
    code, d = _diff(capsys, base, _convert(m, tmp_path / "v2"))
    assert d["semver"] == "MINOR" and code == 3
    assert d["contract"] == []
    reruns = {r["target"]: r for r in d["reruns"]}
    assert reruns["onnx"]["passed"] is False and reruns["triton"]["passed"] is False  # both artifacts rerun
    assert reruns["onnx"]["worst"]["scores max_abs"] > 1e-4


def test_reexport_is_patch_and_lists_hashes(base, tmp_path, capsys):
    code, d = _diff(capsys, base, _convert(_model(), tmp_path / "v2"))
    assert d["semver"] == "PATCH" and code == 0
    assert d["contract"] == [] and all(r["passed"] for r in d["reruns"]) and d["outputs_checked"]
    assert {a["target"] for a in d["artifacts"]} == {"onnx", "triton"}
    assert all("sha256" in a and "bytes" in a for a in d["artifacts"])
    assert main(["report", "diff", str(base), str(tmp_path / "v2")]) == 0
    assert "Release verdict: PATCH" in capsys.readouterr().out


def test_manifests_without_their_files_are_patch_only_by_contract(base, tmp_path, capsys):
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "manifest.json").write_text((base / "manifest.json").read_text())
    code, d = _diff(capsys, base, lone / "manifest.json")
    assert code == 0 and d["semver"] == "PATCH"
    assert {r["why"] for r in d["reruns"]} == {"artifact file missing"} and d["outputs_checked"] is False
