"""The torch converter on every source form it reads, against torch eager."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import forgeml
from forgeml.errors import InputError
from forgeml.ir import sha256_file
from models_zoo import ZOO


class Branchy(torch.nn.Module):
    """Data-dependent control flow: torch.export refuses it, so the TorchScript fallback runs."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        if x.sum().item() > 0:
            return self.fc(x)
        return -self.fc(x)


def _mlp():
    return ZOO["mlp"].build()


def test_in_memory_module_with_tuple_and_dict_inputs(tmp_path):
    b = _mlp()
    x = torch.from_numpy(b.example_inputs["x"])
    r1 = forgeml.convert(b.model, (x,), targets=["onnx"], out_dir=tmp_path / "a", passes=[])
    r2 = forgeml.convert(b.model, {"x": b.example_inputs["x"]}, targets=["onnx"], out_dir=tmp_path / "b", passes=[])
    for r in (r1, r2):
        assert r.ok
        assert r.ir.signature.input_names == ["x"] and r.ir.signature.output_names == ["output"]
        assert r.manifest["source"]["ref"].startswith("<in-memory ")


def test_exported_program_file(tmp_path):
    b = _mlp()
    ep = torch.export.export(b.model, (torch.from_numpy(b.example_inputs["x"]),))
    path = tmp_path / "mlp.pt2"
    torch.export.save(ep, str(path))
    r = forgeml.convert(str(path), targets=["onnx", "safetensors"], out_dir=tmp_path / "o")
    assert r.ok, r.parity.table()
    assert r.manifest["source"]["sha256"] == sha256_file(path)
    assert r.manifest["source"]["route"] == "dynamo"
    assert r.ir.signature.input_names == ["x"]


def test_torchscript_file_uses_the_torchscript_exporter(tmp_path):
    b = _mlp()
    path = tmp_path / "mlp.pt"
    torch.jit.trace(b.model, torch.from_numpy(b.example_inputs["x"])).save(str(path))
    r = forgeml.convert(str(path), {"x": b.example_inputs["x"]}, targets=["onnx"], out_dir=tmp_path / "o")
    assert r.ok, r.parity.table()
    assert r.manifest["source"]["route"] == "torchscript (TorchScript archive)"
    assert "fallback" not in r.manifest["source"]  # by design, not a fallback: no warning
    from forgeml.report.gating import warnings

    assert not [w for w in warnings(r.manifest) if "fell back" in w]


def test_dynamo_failure_falls_back_and_the_report_names_it(tmp_path):
    torch.manual_seed(0)
    model = Branchy().eval()
    r = forgeml.convert(model, torch.ones(2, 4), targets=["onnx"], out_dir=tmp_path / "o", passes=[])
    route = r.manifest["source"]["route"]
    assert route.startswith("torchscript (fallback: ") and "data-dependent" in route
    assert "data-dependent" in r.manifest["source"]["fallback"]
    from forgeml.report.gating import warnings

    assert any("fell back to torchscript" in w for w in warnings(r.manifest))
    assert "route: torchscript" in (r.out_dir / "report.md").read_text()


def test_parity_catches_a_branch_the_tracer_baked_in(tmp_path):
    """The traced graph took the x.sum() > 0 branch; negative user inputs expose it."""
    torch.manual_seed(0)
    negative = {"x": -np.ones((2, 4), np.float32)}
    r = forgeml.convert(Branchy().eval(),
                        torch.ones(2, 4),
                        targets=["onnx"],
                        out_dir=tmp_path / "o",
                        passes=[],
                        parity=forgeml.ParityOptions(inputs=[negative]))
    assert not r.ok and r.exit_code == 1
    assert r.manifest["ok"] is False
    assert not r.manifest["stages"][0]["parity"]["passed"]
    assert (r.out_dir / "model.onnx").is_file()  # written so the failure can be inspected


def test_python_function_source(tmp_path):
    mod = tmp_path / "mymodels.py"
    mod.write_text(
        "import torch\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    m = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh()).eval()\n"
        "    return m, torch.randn(3, 5)\n"
    )
    r = forgeml.convert(f"python:{mod}:build", targets=["onnx"], out_dir=tmp_path / "o")
    assert r.ok and r.manifest["source"]["ref"] == f"python:{mod}:build"


def test_state_dict_file_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(_mlp().model.state_dict(), path)
    with pytest.raises(InputError, match="only weights.*python:module:function"):
        forgeml.convert(str(path), out_dir=tmp_path / "o")


def test_pickled_module_needs_trust(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(Branchy(), path)
    with pytest.raises(InputError, match="`options.trust_pickle`"):
        forgeml.convert(str(path), torch.ones(2, 4), out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()
    r = forgeml.convert(str(path),
                        torch.ones(2, 4),
                        out_dir=tmp_path / "o",
                        passes=[],
                        options=forgeml.ImportOptions(trust_pickle=True))
    assert r.ok


def test_example_inputs_the_model_cannot_take(tmp_path):
    b = _mlp()
    with pytest.raises(InputError, match="failed on the example inputs"):
        forgeml.convert(b.model, torch.randn(4, 7), out_dir=tmp_path / "o")
    with pytest.raises(InputError, match="failed on the example inputs"):
        forgeml.convert(b.model, torch.randn(4, 20, dtype=torch.float64), out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()
