"""torch-aoti: AOTInductor packages checked for parity in a fresh process; non-torch sources refused.

Compiling takes tens of seconds on a 2-core CPU: the CNN is in the default suite, the other zoo
models behind the slow marker.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper

import forgeml
from forgeml.errors import TargetError
from forgeml.targets.torch_aoti.target import run_package


@pytest.mark.parametrize("name", ["cnn", pytest.param("mlp", marks=pytest.mark.slow),
                                  pytest.param("transformer", marks=pytest.mark.slow)])
def test_zoo_compiles_and_matches_torch(tmp_path, name):
    events = []
    r = forgeml.convert(f"zoo:{name}",
                        targets=["torch-aoti"],
                        out_dir=tmp_path / "out",
                        parity=forgeml.ParityOptions(batches=2), on_event=events.append)
    assert r.ok, r.errors
    # The compile has no steps to count: it beats once a second (done = seconds elapsed, total 0).
    beats = [e.progress for e in events if e.name == "torch-aoti" and e.status == "progress" and e.progress[1] == 0]
    assert beats and beats[-1][0] >= 1
    stage = next(s for s in r.manifest["stages"] if s["name"] == "torch-aoti")
    assert stage["parity"]["passed"] and stage["parity"]["profile"] == "fp32"
    assert stage["parity"]["batches"] == 3
    row = stage["parity"]["rows"][0]
    assert row["max_abs"] < 1e-4 and row["cosine"] > 0.99999
    import torch

    assert stage["metadata"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert (tmp_path / "out" / "model.pt2").stat().st_size > 0
    assert r.manifest["artifacts"]["torch-aoti"]["path"] == "model.pt2"
    if name == "cnn":
        _check_contract(tmp_path / "out", r)


def _check_contract(out, r):
    """The package opened on its own (as `forgeml parity` and the MLflow wrapper do): names from the
    signature.json beside it, the same outputs as the run's, and a wrong dtype or rank refused in one
    line before the fresh process starts."""
    from forgeml.errors import InputError
    from forgeml.pipeline.compare import opener
    from forgeml.targets.base import OpenContext

    target = opener(out / "model.pt2")
    assert target is not None and target.name == "torch-aoti"
    run = target.open(out / "model.pt2", OpenContext()).runner
    x = r.ir.signature.inputs[0]
    example = np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 2 for d in x.shape]).astype(np.float32)
    got = run({x.name: example})
    want = run_package(out / "model.pt2", [{x.name: example}], [x.name], r.ir.signature.output_names, "cpu")[0]
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    with pytest.raises(InputError, match=f"model.pt2: input '{x.name}' is float64, expected float32"):
        run({x.name: example.astype(np.float64)})
    with pytest.raises(InputError, match=f"model.pt2: input '{x.name}' has rank"):
        run({x.name: example[0]})


def test_a_torch_export_archive_is_a_source_not_an_aoti_package(tmp_path):
    """Both are .pt2 zips: only a package with compiled code is opened as torch-aoti's artifact."""
    import torch

    from forgeml.pipeline.compare import opener

    ep = torch.export.export(torch.nn.Linear(3, 2).eval(), (torch.zeros(1, 3),))
    torch.export.save(ep, tmp_path / "m.pt2")
    assert opener(tmp_path / "m.pt2") is None


def test_onnx_source_is_refused_and_other_targets_complete(tmp_path):
    vi = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [vi("x", TensorProto.FLOAT, [2, 3])],
                              [vi("y", TensorProto.FLOAT, [2, 3])])
    src = tmp_path / "relu.onnx"
    src.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    r = forgeml.convert(str(src), targets=["onnx", "torch-aoti"], out_dir=tmp_path / "out")
    assert r.exit_code == 2 and list(r.artifacts) == ["onnx"]
    assert "compiles a torch source model" in r.errors["torch-aoti"] and "onnx" in r.errors["torch-aoti"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert "torch-aoti" in manifest["errors"]


@pytest.mark.slow
def test_a_broken_package_fails_in_the_fresh_process_with_one_line(tmp_path):
    bad = tmp_path / "model.pt2"
    bad.write_bytes(b"not a package")
    with pytest.raises(TargetError, match="failed to load or run in a fresh process"):
        run_package(bad, [{"x": np.zeros((1, 3), np.float32)}], ["x"], ["y"], "cpu")


@pytest.mark.gpu
@pytest.mark.slow
def test_cuda_package_matches_torch(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible: the CUDA AOTInductor path needs one")
    r = forgeml.convert("zoo:transformer",
                        targets=["torch-aoti"],
                        out_dir=tmp_path / "out",
                        parity=forgeml.ParityOptions(batches=1))
    stage = next(s for s in r.manifest["stages"] if s["name"] == "torch-aoti")
    assert stage["metadata"]["device"] == "cuda" and stage["metadata"]["compute_capability"]
    assert r.ok, (r.errors, stage.get("parity"))
