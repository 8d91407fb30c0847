"""Runners are small classes with typed attributes; a runner that times itself says so by its type."""

from __future__ import annotations

import numpy as np
import pytest

from forgeml.runtime import SelfTimed
from forgeml.runtime.latency import artifact_latency


def _add_one() -> bytes:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "g", [x], [y], [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_ort_runner_holds_its_session_and_names():
    from forgeml.errors import TargetError
    from forgeml.runtime.ort import OrtRunner, ort_runner

    run = ort_runner(_add_one())
    assert isinstance(run, OrtRunner) and run.scratch is None
    assert [i.name for i in run.session.get_inputs()] == run.input_names == ["x"] and run.output_names == ["y"]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(run({"x": x})["y"], x + 1)
    with pytest.raises(TargetError, match=r"no value given for model input\(s\) \['x'\]"):
        run({})


def test_latency_is_measured_unless_the_runner_times_itself():
    from forgeml.runtime.ort import ort_runner

    inputs = {"x": np.ones((2, 3), np.float32)}
    measured = artifact_latency(ort_runner(_add_one()), inputs)
    assert measured["runs"] >= 1 and measured["median_ms"] > 0 and measured["inputs"] == {"x": [2, 3]}

    class Served:
        calls = 0

        def __call__(self, inputs):
            Served.calls += 1
            return {"y": inputs["x"] + 1}

        def latency(self, inputs):
            return {"note": "timed elsewhere"}

    assert isinstance(Served(), SelfTimed) and not isinstance(lambda inputs: inputs, SelfTimed)
    assert artifact_latency(Served(), inputs) == {"note": "timed elsewhere"} and Served.calls == 0
