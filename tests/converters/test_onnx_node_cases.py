"""ONNX's own node conformance cases as a source (the cases ``scripts/coverage.py`` sweeps).

The cases come from the installed onnx package's generators, with the inputs the ONNX authors wrote
for them: an integer input there carries an axis, a shape or an image size that random values would
break. forgeml must convert them with those inputs (and its derived batches must keep them valid),
and when it has to make inputs up, a failure must say so instead of blaming the model.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import forgeml
from forgeml.errors import ForgeError, InputError

# The list: refused once because forgeml's own example broke the op.
FIXED = ["test_affine_grid_2d", "test_affine_grid_3d_align_corners", "test_col2im", "test_col2im_pads",
         "test_cumsum_1d_exclusive", "test_cumsum_2d_axis_1", "test_cumprod_1d_reverse", "test_cumprod_2d_axis_0",
         "test_convinteger_without_padding", "test_expand_dim_changed", "test_expand_dim_unchanged"]


@pytest.fixture(scope="module")
def cases():
    """The cases of these ops only: importing an op's case module runs its generators (1-2 s), where
    ``collect_testcases()`` imports all of them (20 s on a busy 2-core machine)."""
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import onnx.backend.test.case.node as node

        for op in ("affinegrid", "col2im", "cumsum", "cumprod", "convinteger", "expand", "dequantizelinear", "nonmaxsuppression"):
            importlib.import_module(f"onnx.backend.test.case.node.{op}")
        found = getattr(node, "_NodeTestCases", None) or node.collect_testcases()
        return {c.name: c for c in found}


def _inputs(case):
    init = {t.name for t in case.model.graph.initializer}
    names = [i.name for i in case.model.graph.input if i.name not in init]
    return [dict(zip(names, map(np.asarray, ins))) for ins, _ in case.data_sets]


@pytest.mark.parametrize("name", FIXED)
def test_node_case_converts_with_its_own_inputs(cases, tmp_path, name):
    case = cases[name]
    sets = _inputs(case)
    r = forgeml.convert(case.model, sets[0], targets=["onnx"], out_dir=tmp_path / "o",
                        parity=forgeml.ParityOptions(batches=2, inputs=tuple(sets[1:]), localize="never"))
    assert r.ok, r.parity.table()
    # The stage outputs are onnxruntime's on the case; the case also carries the ONNX reference's
    # expected outputs: the written model must reproduce them on the case's inputs.
    from forgeml.runtime.ort import ort_runner

    got = ort_runner(str(r.artifacts["onnx"].path))(sets[0])
    for want, out in zip(case.data_sets[0][1], case.model.graph.output):
        np.testing.assert_allclose(got[out.name], np.asarray(want), rtol=1e-4, atol=1e-5)


def test_node_case_inputs_replace_the_made_up_example(cases, tmp_path):
    """Without an example, the case's inputs given as `parity.inputs` stand in for the invented one."""
    case = cases["test_cumsum_2d_axis_1"]
    (given,) = _inputs(case)
    r = forgeml.convert(case.model, targets=["onnx"], out_dir=tmp_path / "o",
                        parity=forgeml.ParityOptions(batches=2, inputs=(given,), localize="never"))
    assert r.ok, r.parity.table()


def test_made_up_inputs_that_break_the_model_are_named_as_such(cases, tmp_path):
    case = cases["test_cumsum_1d"]  # its `axis` input must be 0 for a 1-D tensor; forgeml draws [0, 2)
    with pytest.raises(InputError, match=r"inputs forgeml made up from its signature.*axis 1 is not in valid range"
                                         r".*`parity.inputs`"):
        forgeml.convert(case.model, targets=["onnx"], out_dir=tmp_path / "o", parity=forgeml.ParityOptions(batches=1))


def test_runtime_refusal_keeps_onnxruntimes_reason(cases, tmp_path):
    """Per-channel ConvInteger zero points: onnxruntime (the reference) cannot run it. The line says
    which node and why, not the C++ file and signature a cut message would keep instead."""
    case = cases["test_convinteger_with_padding"]
    with pytest.raises(ForgeError) as e:
        forgeml.convert(case.model, _inputs(case)[0], targets=["onnx"], out_dir=tmp_path / "o")
    msg = str(e.value)
    assert "ConvInteger node" in msg and "Non per-tensor quantization is not supported" in msg
    assert "onnxruntime_src" not in msg and "\n" not in msg


def test_onnxsim_failure_leaves_the_model_unsimplified(cases, tmp_path):
    """onnxsim fails on this valid case (an If subgraph's outer-scope name); the conversion goes on
    without simplification, says so, and the written model still matches."""
    case = cases["test_affine_grid_3d_align_corners_expanded"]
    r = forgeml.convert(case.model, _inputs(case)[0], targets=["onnx"], out_dir=tmp_path / "o",
                        parity=forgeml.ParityOptions(batches=1, localize="never"))
    assert r.ok, r.parity.table()
    simplify = next(s for s in r.manifest["stages"] if s["name"] == "simplify")
    assert simplify["details"]["skipped"].startswith("simplify: onnxsim failed")
    assert any("unsimplified" in w for w in r.manifest["warnings"])


def test_element_type_numpy_cannot_hold_is_refused_in_one_line(cases, tmp_path):
    case = cases["test_dequantizelinear_e4m3fn"]  # a float8 input: its case stores it as a TensorProto
    with pytest.raises(InputError, match="input 'x' has element type float8e4m3fn, which onnxruntime's Python API cannot take"):
        forgeml.convert(case.model, targets=["onnx"], out_dir=tmp_path / "o")


def test_sequence_input_is_refused_in_one_line(tmp_path):
    from onnx import TensorProto, helper

    seq = helper.make_tensor_sequence_value_info("xs", TensorProto.FLOAT, None)
    out = helper.make_tensor_value_info("y", TensorProto.INT64, [])
    graph = helper.make_graph([helper.make_node("SequenceLength", ["xs"], ["y"])], "g", [seq], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(InputError, match="input 'xs' is a sequence, not a tensor"):
        forgeml.convert(model, targets=["onnx"], out_dir=tmp_path / "o")


def test_single_float_inputs_keep_their_value(cases, tmp_path):
    """NonMaxSuppression's IoU threshold (a one-element float) must stay in [0, 1]: the derived
    parity batches perturb the boxes and scores, never a single float that carries a value."""
    case = cases["test_nonmaxsuppression_suppress_by_IOU"]
    r = forgeml.convert(case.model, _inputs(case)[0], targets=["onnx"], out_dir=tmp_path / "o",
                        parity=forgeml.ParityOptions(batches=3, localize="never"))
    assert r.ok, r.parity.table()
