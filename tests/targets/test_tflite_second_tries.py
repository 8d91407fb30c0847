"""Graphs onnx2tf used to refuse or get wrong, through the tflite target: parity is measured in the
TFLite interpreter against torch (the source framework), and the manifest's route says which try
made the file. Tiny torch models built here; TensorFlow and onnx2tf make each case take seconds."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx2tf")
pytest.importorskip("ai_edge_litert")
torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import forgeml  # noqa: E402
from forgeml.targets.tflite.target import TFLiteConfig  # noqa: E402

pytestmark = pytest.mark.slow


class GroupedConvs(nn.Module):
    """Grouped Conv and a ConvNeXt-style 7x7 depthwise Conv: onnx2tf builds them with kernels its Keras
    model does not track, which used to cost the .tflite its serving signature."""

    def __init__(self):
        super().__init__()
        self.grouped = nn.Conv2d(8, 12, 3, padding=1, groups=4)
        self.depthwise = nn.Conv2d(12, 12, 7, padding=3, groups=12)
        self.grouped1d = nn.Conv1d(4, 6, 3, groups=2)

    def forward(self, x, seq):
        return self.depthwise(torch.relu(self.grouped(x))).mean((2, 3)), self.grouped1d(seq)


class LSTMWithState(nn.Module):
    """Initial state given as inputs: onnx2tf makes the [directions, batch, hidden] state channel-last
    like an activation and its LSTM then refuses the state's shape."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 8, batch_first=True)

    def forward(self, x, h, c):
        return self.lstm(x, (h, c))[0]


class NormOverBatch(nn.Module):
    """ReduceL2 with keepdims=0 over axis 0: onnx2tf leaves the rank-3 output in neither the source
    nor the channel-last order."""

    def forward(self, x):
        return torch.linalg.vector_norm(x, dim=0)


class LowerRankAdds(nn.Module):
    """A rank-3 constant and a rank-3 input added to a rank-4 activation."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.randn(3, 4, 5))

    def forward(self, x, mask):
        return (x + self.bias) * 2 + mask


def _rand(*shape):
    return torch.from_numpy(np.random.default_rng(len(shape)).normal(size=shape).astype(np.float32))


CASES = {
    "grouped-conv": (GroupedConvs, (_rand(1, 8, 10, 10), _rand(2, 4, 9)), ""),
    "lstm-initial-state": (LSTMWithState, (_rand(2, 5, 6), _rand(1, 2, 8), _rand(1, 2, 8)),
                           "inputs kept in the source layout → onnx2tf"),
    "reduce-l2-keepdims-0": (NormOverBatch, (_rand(2, 3, 4, 5),), ""),
    "lower-rank-add": (LowerRankAdds, (_rand(1, 3, 4, 5), _rand(3, 4, 5)),
                       "ONNX rewritten (equal-broadcast-ranks); inputs kept in the source layout → onnx2tf"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tflite_matches_torch(tmp_path, case):
    cls, example, route = CASES[case]
    torch.manual_seed(0)
    result = forgeml.convert(cls().eval(), example, targets=["tflite"], out_dir=tmp_path / "out",
                             parity=forgeml.ParityOptions(batches=2, localize="never"),
                             target_configs={"tflite": TFLiteConfig(variant="fp32")})
    assert "tflite" not in result.errors, result.errors
    stage = next(s for s in result.manifest["stages"] if s["name"] == "tflite")
    assert stage["parity"]["passed"], stage["parity"]
    for row in stage["parity"]["rows"]:
        assert row["max_abs"] < 1e-4, row
    meta = result.artifacts["tflite"].metadata
    assert meta["route"].startswith(route or "onnx2tf "), meta["route"]
    from forgeml.targets.tflite.runner import tflite_runner

    runner = tflite_runner(result.artifacts["tflite"].path)
    assert "serving_default" in runner.interpreter.get_signature_list()


def test_every_try_failing_names_each(tmp_path):
    """Reduction axes given at run time: no try can lower it, and the one line says what each try hit."""
    import onnx
    from onnx import TensorProto, helper

    from forgeml.errors import TargetError
    from forgeml.targets.tflite.lowering import lower

    g = helper.make_graph([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 5]),
                           helper.make_tensor_value_info("axes", TensorProto.INT64, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    m = onnx.shape_inference.infer_shapes(m)
    sample = {"x": np.ones((1, 3, 4, 5), np.float32), "axes": np.array([1], np.int64)}
    with pytest.raises(TargetError, match=r"onnx2tf failed.*\(tried again — inputs kept: onnx2tf failed"):
        lower(m, [sample], tmp_path, keep_layout=False)
