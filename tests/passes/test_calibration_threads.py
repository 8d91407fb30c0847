"""int8-static's calibration runs onnxruntime with a fixed thread count, not one thread per core of the
node the job landed on (a reduction split differently can move a min/max, and with it a scale's bits)."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from forgeml.passes.precision.quantize import CALIBRATION_THREADS, _calibration_threads


def _calibrator(tmp_path):
    from onnxruntime.quantization.calibrate import create_calibrator

    vi = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)], "g",
                              [vi("x", TensorProto.FLOAT, [4, 64])], [vi("y", TensorProto.FLOAT, [])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return create_calibrator(str(path), augmented_model_path=str(tmp_path / "aug.onnx"))


def test_the_calibrator_session_has_the_pinned_thread_count(tmp_path):
    from onnxruntime.quantization.calibrate import CalibraterBase

    original = CalibraterBase.create_inference_session
    with _calibration_threads():
        options = _calibrator(tmp_path).infer_session.get_session_options()
    assert options.intra_op_num_threads == CALIBRATION_THREADS == 1
    assert CalibraterBase.create_inference_session is original  # put back after the block
    assert _calibrator(tmp_path).infer_session.get_session_options().intra_op_num_threads == 0  # ORT's default
