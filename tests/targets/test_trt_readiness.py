"""check-trt: each rule on a small graph built to trip it, the zoo models, and the CLI's exit codes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from forgeml.cli.app import main
from forgeml.targets.tensorrt.readiness import check_file, check_model

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=(), opset=20, domains=(), functions=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    imports = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in domains)]
    return helper.make_model(graph, opset_imports=imports, functions=list(functions))


def _vi(name, dtype=F, shape=(2, 3)):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def _rules(result, severity="error"):
    return {(f.rule, f.op) for f in result.findings if f.severity == severity}


def test_a_plain_supported_graph_is_ready():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x")], [_vi("y")])
    r = check_model(m)
    assert r.ready and r.findings == [] and r.ops == {"Relu": 1}


@pytest.mark.parametrize("op", ["Det", "BitShift"])
def test_unsupported_op_blocks(op):
    dtype = TensorProto.UINT32 if op == "BitShift" else F
    shape = (3, 3)
    inputs = [_vi("x", dtype, shape)] + ([_vi("s", dtype, shape)] if op == "BitShift" else [])
    node = helper.make_node(op, [i.name for i in inputs], ["y"], **({"direction": "LEFT"} if op == "BitShift" else {}))
    outs = [_vi("y", dtype, () if op == "Det" else shape)]
    r = check_model(_model([node], inputs, outs))
    assert not r.ready
    assert ("unsupported-op", op) in _rules(r)


def test_dynamic_quantization_ops_block():
    """What onnxruntime's dynamic int8 quantizer writes: TensorRT imports neither op."""
    x = _vi("x", F, (2, 4))
    w = numpy_helper.from_array(np.ones((4, 3), np.uint8), "w")
    wzp = numpy_helper.from_array(np.array(0, np.uint8), "wzp")
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xzp"]),
             helper.make_node("MatMulInteger", ["xq", "w", "xzp", "wzp"], ["y"])]
    r = check_model(_model(nodes, [x], [_vi("y", TensorProto.INT32, (2, 3))], [w, wzp]))
    assert {("unsupported-op", "DynamicQuantizeLinear"), ("unsupported-op", "MatMulInteger")} <= _rules(r)
    # and the UINT8 tensors between them are inside the network, which TensorRT does not allow
    assert any(f.rule == "dtype" and "UINT8" in f.message for f in r.blocking)


def test_op_newer_than_the_matrix_blocks():
    x = _vi("x", F, (2, 8))
    scale = numpy_helper.from_array(np.ones(8, np.float32), "scale")
    m = _model([helper.make_node("RMSNormalization", ["x", "scale"], ["y"])], [x], [_vi("y", F, (2, 8))],
               [scale], opset=23)
    r = check_model(m)
    assert ("unsupported-op", "RMSNormalization") in _rules(r)
    assert ("opset", "") in _rules(r, "warning")


def test_too_old_opset_blocks():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x")], [_vi("y")], opset=6)
    assert ("opset", "") in _rules(check_model(m))


def test_resize_cubic_and_antialias_block():
    x = _vi("x", F, (1, 1, 4, 4))
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic", antialias=1)
    r = check_model(_model([node], [x], [_vi("y", F, (1, 1, 8, 8))], [scales]))
    msgs = [f.message for f in r.blocking if f.rule == "attribute"]
    assert any("mode='cubic'" in m for m in msgs) and any("antialias" in m for m in msgs)


def test_maxpool_indices_output_blocks():
    x = _vi("x", F, (1, 1, 4, 4))
    node = helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2])
    outs = [_vi("y", F, (1, 1, 3, 3)), _vi("idx", TensorProto.INT64, (1, 1, 3, 3))]
    r = check_model(_model([node], [x], outs))
    assert any(f.rule == "attribute" and "Indices" in f.message for f in r.blocking)


def test_1d_pooling_and_dilations_block():
    x = _vi("x", F, (1, 1, 8))
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2], dilations=[2])
    r = check_model(_model([node], [x], [_vi("y", F, (1, 1, 6))]))
    msgs = " ".join(f.message for f in r.blocking)
    assert "1D pooling" in msgs and "dilation" in msgs


def test_runtime_slice_axes_block_but_initializer_axes_pass():
    x = _vi("x", F, (4, 6))
    starts = numpy_helper.from_array(np.array([1], np.int64), "starts")
    ends = numpy_helper.from_array(np.array([3], np.int64), "ends")
    axes_init = numpy_helper.from_array(np.array([1], np.int64), "axes")
    ok = _model([helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"])], [x], [_vi("y", F, (4, 2))],
                [starts, ends, axes_init])
    assert check_model(ok).ready
    axes_in = _vi("axes", TensorProto.INT64, (1,))
    bad = _model([helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"])], [x, axes_in],
                 [_vi("y", F, (4, None))], [starts, ends])
    assert ("attribute", "Slice") in _rules(check_model(bad))


def test_qdq_with_nonzero_uint8_zero_point_blocks_and_symmetric_int8_passes():
    x = _vi("x", F, (2, 3))
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")

    def qdq(zp):
        z = numpy_helper.from_array(zp, "zp")
        nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"]),
                 helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"])]
        return check_model(_model(nodes, [x], [_vi("y")], [scale, z]))

    assert qdq(np.array(0, np.int8)).ready
    r = qdq(np.array(128, np.uint8))
    msgs = [f.message for f in r.blocking]
    assert any("not zero" in m for m in msgs) and any("UINT8" in m for m in msgs)


def test_unsupported_dtype_and_op_dtype_block():
    # UINT16 exists in ONNX, not in TensorRT
    m = _model([helper.make_node("Identity", ["x"], ["y"])], [_vi("x", TensorProto.UINT16)],
               [_vi("y", TensorProto.UINT16)])
    r = check_model(m)
    assert any(f.rule == "dtype" and "UINT16" in f.message for f in r.blocking)
    # MatMul takes float types only in TensorRT
    m = _model([helper.make_node("MatMul", ["a", "b"], ["y"])],
               [_vi("a", TensorProto.INT64, (2, 3)), _vi("b", TensorProto.INT64, (3, 2))],
               [_vi("y", TensorProto.INT64, (2, 2))])
    assert ("dtype", "MatMul") in _rules(check_model(m))


def test_int8_outside_qdq_blocks():
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=TensorProto.INT8),
             helper.make_node("Cast", ["c"], ["y"], to=F)]
    r = check_model(_model(nodes, [_vi("x")], [_vi("y")]))
    assert any(f.rule == "dtype" and "INT8 tensor 'c'" in f.message for f in r.blocking)


def test_int64_is_cast_and_clamped_before_tensorrt_9_only():
    x = _vi("x", TensorProto.INT64, (3,))
    big = numpy_helper.from_array(np.array([2**40, 1, 2], np.int64), "big")
    m = _model([helper.make_node("Add", ["x", "big"], ["y"])], [x], [_vi("y", TensorProto.INT64, (3,))], [big])
    old = check_model(m, tensorrt="8.5")
    casts = [f.message for f in old.findings if f.rule == "cast"]
    assert old.ready  # cast is a warning: it builds, but the numbers change
    assert any("cast to INT32" in c and "'x'" in c for c in casts) and any("outside the INT32 range" in c for c in casts)
    new = check_model(m, tensorrt="10.1")
    assert new.ready and not any(f.rule == "cast" for f in new.findings)


def test_slice_sentinel_ends_are_not_reported_as_clamped():
    x = _vi("x", F, (4,))
    inits = [numpy_helper.from_array(np.array([1], np.int64), "s"),
             numpy_helper.from_array(np.array([2**63 - 1], np.int64), "e")]
    m = _model([helper.make_node("Slice", ["x", "s", "e"], ["y"])], [x], [_vi("y", F, (3,))], inits, opset=17)
    assert not any("outside the INT32" in f.message for f in check_model(m, tensorrt="8.5").findings)


def test_double_is_cast_down():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", TensorProto.DOUBLE)], [_vi("y", TensorProto.DOUBLE)])
    r = check_model(m)
    assert r.ready and any(f.rule == "cast" and "DOUBLE" in f.message and "FLOAT" in f.message for f in r.findings)


def test_data_dependent_shapes():
    nz = _model([helper.make_node("NonZero", ["x"], ["y"])], [_vi("x")], [_vi("y", TensorProto.INT64, (2, None))])
    r = check_model(nz)
    assert r.ready and ("data-dependent-shape", "NonZero") in _rules(r, "warning")
    uq = _model([helper.make_node("Unique", ["x"], ["y"])], [_vi("x", F, (5,))], [_vi("y", F, (None,))])
    r = check_model(uq)
    assert ("data-dependent-shape", "Unique") in _rules(r)
    k = _vi("k", TensorProto.INT64, (1,))
    tk = _model([helper.make_node("TopK", ["x", "k"], ["v", "i"])], [_vi("x", F, (2, 8)), k],
                [_vi("v", F, (2, None)), _vi("i", TensorProto.INT64, (2, None))])
    assert ("data-dependent-shape", "TopK") in _rules(check_model(tk), "warning")


def test_custom_op_needs_a_plugin():
    node = helper.make_node("MyFancyOp", ["x"], ["y"], domain="com.example")
    m = _model([node], [_vi("x")], [_vi("y")], domains=["com.example"])
    r = check_model(m)
    assert ("plugin", "MyFancyOp") in _rules(r)
    with_plugin = check_model(m, plugins=("MyFancyOp",))
    assert with_plugin.ready and ("plugin", "MyFancyOp") in _rules(with_plugin, "info")


def test_local_function_is_checked_inside():
    body = [helper.make_node("Unique", ["a"], ["b"])]
    fn = helper.make_function("local", "Wrap", ["a"], ["b"], body, [helper.make_opsetid("", 20)])
    m = _model([helper.make_node("Wrap", ["x"], ["y"], domain="local")], [_vi("x", F, (5,))], [_vi("y", F, (None,))],
               domains=["local"], functions=[fn])
    r = check_model(m)
    assert ("data-dependent-shape", "Unique") in _rules(r)
    assert not any(f.rule == "plugin" for f in r.findings)


def test_subgraphs_are_checked():
    then = helper.make_graph([helper.make_node("Det", ["x"], ["t"])], "then", [], [_vi("t", F, ())])
    other = helper.make_graph([helper.make_node("ReduceSum", ["x"], ["e"], keepdims=0)], "else", [], [_vi("e", F, ())])
    node = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)
    m = _model([node], [_vi("c", TensorProto.BOOL, ()), _vi("x", F, (3, 3))], [_vi("y", F, ())])
    assert ("unsupported-op", "Det") in _rules(check_model(m))


def test_dynamic_input_is_noted():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", F, ("batch", 3))], [_vi("y", F, ("batch", 3))])
    r = check_model(m)
    assert r.ready and any(f.rule == "dynamic-shape" and "0=batch" in f.message for f in r.findings)


def _if(then_out, else_out, cond_const=False):
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [], [then_out])
    other = helper.make_graph([helper.make_node("ReduceSum", ["x"], ["e"], keepdims=0)], "else", [], [else_out])
    node = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)
    inits = [numpy_helper.from_array(np.array(True), "c")] if cond_const else []
    inputs = ([] if cond_const else [_vi("c", TensorProto.BOOL, ())]) + [_vi("x", F, (3, 3))]
    return _model([node], inputs, [helper.make_tensor_value_info("y", F, None)], inits)


def test_if_branches_of_different_rank_block():
    r = check_model(_if(_vi("t", F, (3, 3)), _vi("e", F, ())))
    assert ("control-flow", "If") in _rules(r)
    assert any("rank 2" in f.message and "rank 0" in f.message for f in r.blocking)


def test_if_branches_of_equal_rank_and_constant_conditions_pass():
    same = _if(_vi("t", F, (3, 3)), _vi("e", F, (3, 3)))
    assert not any(f.rule == "control-flow" for f in check_model(same).findings)
    # the parser imports only the taken branch when the condition is an initializer
    const = _if(_vi("t", F, (3, 3)), _vi("e", F, ()), cond_const=True)
    assert not any(f.rule == "control-flow" for f in check_model(const).findings)


def test_eyelike_of_a_runtime_shape_blocks_and_static_passes():
    shape = _vi("s", TensorProto.INT64, (2,))
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["z"]), helper.make_node("EyeLike", ["z"], ["y"])]
    r = check_model(_model(nodes, [shape], [_vi("y", F, (None, None))]))
    assert ("shape", "EyeLike") in _rules(r)
    dyn = check_model(_model([helper.make_node("EyeLike", ["x"], ["y"])], [_vi("x", F, ("n", 4))],
                             [_vi("y", F, ("n", 4))]))
    assert ("shape", "EyeLike") in _rules(dyn)
    static = check_model(_model([helper.make_node("EyeLike", ["x"], ["y"])], [_vi("x", F, (4, 4))],
                                [_vi("y", F, (4, 4))]))
    assert static.ready and not any(f.rule == "shape" for f in static.findings)


def _loop(scan_shape):
    """Loop of trip count 3 with one carried sum and one scan output of per-iteration ``scan_shape``."""
    i64, b = TensorProto.INT64, TensorProto.BOOL
    body_nodes = [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                  helper.make_node("Add", ["acc_in", "x"], ["acc_out"])]
    if None in scan_shape:  # a slice of x whose length is the iteration number: changes every iteration
        body_nodes += [helper.make_node("Unsqueeze", ["i", "zero"], ["i1"]),
                       helper.make_node("Slice", ["x", "zero", "i1", "zero"], ["scan"])]
    else:
        body_nodes += [helper.make_node("Identity", ["acc_out"], ["scan"])]
    body = helper.make_graph(
        body_nodes, "body",
        [_vi("i", i64, ()), _vi("cond_in", b, ()), _vi("acc_in", F, (4,))],
        [_vi("cond_out", b, ()), _vi("acc_out", F, (4,)), _vi("scan", F, scan_shape)],
        initializer=[numpy_helper.from_array(np.array([0], np.int64), "zero")])
    inits = [numpy_helper.from_array(np.array(3, np.int64), "trip"),
             numpy_helper.from_array(np.array(True), "cond"),
             numpy_helper.from_array(np.zeros(4, np.float32), "acc0")]
    node = helper.make_node("Loop", ["trip", "cond", "acc0"], ["acc", "scans"], body=body)
    outs = [_vi("acc", F, (4,)), helper.make_tensor_value_info("scans", F, None)]
    return _model([node], [_vi("x", F, (4,))], outs, inits)


def test_loop_scan_output_of_dynamic_shape_blocks_and_static_passes():
    r = check_model(_loop((None,)))
    assert ("control-flow", "Loop") in _rules(r)
    assert any("'scan'" in f.message for f in r.blocking if f.rule == "control-flow")
    ok = check_model(_loop((4,)))
    assert not any(f.rule == "control-flow" for f in ok.findings), ok.findings


def test_roialign_needs_a_plugin_and_names_the_option():
    x = _vi("x", F, (1, 2, 8, 8))
    rois = numpy_helper.from_array(np.array([[0, 0, 4, 4]], np.float32), "rois")
    idx = numpy_helper.from_array(np.array([0], np.int64), "idx")
    node = helper.make_node("RoiAlign", ["x", "rois", "idx"], ["y"], output_height=2, output_width=2)
    m = _model([node], [x], [_vi("y", F, (1, 2, 2, 2))], [rois, idx])
    r = check_model(m)
    msgs = [f.message for f in r.findings if f.rule == "plugin" and f.severity == "warning"]
    assert msgs and "needs a plugin" in msgs[0] and "`TensorRTConfig.plugins`" in msgs[0] and "ROIAlign_TRT" in msgs[0]
    said = check_model(m, plugins=("RoiAlign",))
    assert ("plugin", "RoiAlign") in _rules(said, "info") and not _rules(said, "warning") & {("plugin", "RoiAlign")}


# --- the zoo and the CLI --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def zoo_onnx(zoo_runs):
    """The zoo's ONNX artifacts from the session's shared conversions (tests/conftest.py)."""
    return {name: zoo_runs(name).artifacts["onnx"].path for name in ("mlp", "cnn", "transformer")}


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer"])
def test_zoo_models_are_ready_for_tensorrt_10(zoo_onnx, name):
    r = check_file(zoo_onnx[name])
    assert r.ready, r.blocking
    assert sum(r.ops.values()) > 0


def test_zoo_transformer_is_not_ready_for_tensorrt_8_5(zoo_onnx):
    """TensorRT 8.5 predates LayerNormalization and Gelu import; its parser casts INT64 token ids."""
    r = check_file(zoo_onnx["transformer"], tensorrt="8.5")
    assert ("unsupported-op", "LayerNormalization") in _rules(r)
    assert any(f.rule == "cast" and "input_ids" in f.message for f in r.findings)


def test_cli_exit_codes(zoo_onnx, tmp_path, capsys):
    assert main(["check-trt", str(zoo_onnx["cnn"])]) == 0
    bad = tmp_path / "unique.onnx"
    onnx.save(_model([helper.make_node("Unique", ["x"], ["y"])], [_vi("x", F, (5,))], [_vi("y", F, (None,))]), bad)
    capsys.readouterr()
    assert main(["check-trt", str(bad), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ready"] is False and report["counts"]["error"] >= 1
    assert main(["check-trt", str(tmp_path / "missing.onnx")]) == 2
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert main(["check-trt", str(junk)]) == 2
    assert main(["check-trt", str(zoo_onnx["cnn"]), "--tensorrt", "7.0"]) == 2
