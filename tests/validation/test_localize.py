"""First divergence: a wrong weight planted by a pass is found, named by node, op and source module."""

from __future__ import annotations


import pytest

from tests.validation.fault_passes import PlantWrongWeight, weight_of_module

from forgeml.converters import ImportOptions
from forgeml.passes import make_pass
from forgeml.pipeline.run import PipelineConfig, run
from forgeml.pipeline.sources import resolve
from forgeml.parity.inputs import parity_inputs
from forgeml.parity.localize import localize_stage
from forgeml.parity.tolerances import profile_for

MODULE = "layers.1.ff1"  # a Linear deep inside the zoo transformer


@pytest.fixture(scope="module")
def converted():
    r = resolve("zoo:transformer")
    return r.converter.convert(r.model, r.example_inputs, r.ref, ImportOptions(output_names=r.output_names))


@pytest.mark.slow
def test_planted_weight_after_simplify_is_named_in_the_report(converted, tmp_path):
    weight, _ = weight_of_module(converted.ir.model, MODULE)
    plant = PlantWrongWeight(initializer=weight, scale=1.5)
    config = PipelineConfig(targets=("onnx",), passes=(make_pass("check"), make_pass("simplify"), plant),
                            command="pytest: planted fault")
    result = run(resolve("zoo:transformer"), config, tmp_path / "out")
    assert not result.ok and result.exit_code == 1
    stages = {s["name"]: s for s in result.manifest["stages"]}
    assert stages["simplify"]["parity"]["passed"] and not stages["plant-wrong-weight"]["parity"]["passed"]
    d = stages["plant-wrong-weight"]["divergence"]
    assert d["found"] and d["method"] == "onnx-by-name"
    # simplify rewrote MatMul+Add into a Gemm with a new name: the node that reads the planted weight is named
    node = next(n for n in result.ir.model.graph if any(v is not None and v.name == weight for v in n.inputs))
    assert d["node"] == node.name and d["op"] == node.op_type
    assert d["module"] == MODULE and d["module_class"] == "torch.nn.modules.linear.Linear"
    assert weight in d["evidence"]
    assert "torch_models.py" in d["source_line"]
    # and the report says so
    html = (result.out_dir / "report.html").read_text()
    assert f"<code>{node.name}</code>" in html and f"<code>{MODULE}</code>" in html
    # nothing diverges before the planted node: every compared value upstream matched
    assert d["last_matching_value"] is not None


@pytest.mark.slow
def test_export_fault_is_found_through_torch_forward_hooks(converted):
    """When the converter's own graph is wrong, module outputs from hooks are the reference."""
    weight, node_name = weight_of_module(converted.ir.model, MODULE)
    bad = PlantWrongWeight(initializer=weight, scale=1.5)(converted.ir.model).model
    inputs = parity_inputs(converted.example_inputs, converted.ir.signature, batches=0, seed=0,
                           dynamic_batch=False)[0]
    d = localize_stage(bad, converted, None, inputs, profile_for("fp32"))
    assert d["found"] and d["method"] == "torch-hooks"
    assert d["module"] == MODULE
    # the module's output is produced by the last node in its scope (the bias Add after the MatMul)
    assert d["op"] in ("Add", "MatMul", "Gemm")
    assert d["metrics"]["passed"] is False and d["compared"] > 1


def test_localization_never_raises(converted):
    d = localize_stage(b"not a model", converted, converted.ir, {}, profile_for("fp32"))
    assert d["found"] is False and "could not run" in d["note"]



def _periodic_net():
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), _Sin(), torch.nn.Linear(16, 4)).eval()
    with torch.no_grad():
        net[0].weight.mul_(1e4)
    return net, (torch.randn(4, 8),)


def _Sin():
    import torch

    class Sin(torch.nn.Module):
        def forward(self, x):
            return torch.sin(x)

    return Sin()


@pytest.mark.parametrize("scale,ill", [(1 + 2**-22, True), (1.5, False)])
def test_ill_conditioned_layer_is_told_apart_from_a_broken_one(tmp_path, scale, ill):
    """A weight moved by two float32 rounding steps (what a correct rewrite may do) diverges at the sin
    fed with pre-activations of ~1e4: the report calls the model ill-conditioned there. A weight
    scaled by 1.5 (a broken rewrite) is not excused."""
    model, example = _periodic_net()
    r = resolve(model, example)
    conv = r.converter.convert(r.model, r.example_inputs, r.ref, ImportOptions())
    try:
        weight, _ = weight_of_module(conv.ir.model, "0", op="Gemm")
    except LookupError:
        weight, _ = weight_of_module(conv.ir.model, "0")
    plant = PlantWrongWeight(initializer=weight, scale=scale)
    config = PipelineConfig(targets=("onnx",), passes=(make_pass("check"), plant), command="pytest: conditioning")
    result = run(resolve(model, example), config, tmp_path / "out")
    assert not result.ok
    d = next(s for s in result.manifest["stages"] if s["name"] == "plant-wrong-weight")["divergence"]
    assert d["found"], d
    assert d["conditioning"]["ill_conditioned"] is ill, d
    md = (result.out_dir / "report.md").read_text()
    assert ("ill-conditioned, not a broken conversion" in md) is ill
