"""optimize on a dynamo export: onnxscript's fusions fire where onnxruntime's do not, outputs unchanged,
and the Q/K/V projections stay MatMuls that int8 can still quantize."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from forgeml.passes import from_proto, to_proto
from forgeml.passes.optimize import OptimizePass
from tests.passes.conftest import run_proto

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_bert_export(tmp_path_factory) -> onnx.ModelProto:
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=32, num_labels=3)
    model = transformers.BertForSequenceClassification(config).eval()
    ids = torch.randint(0, 100, (2, 16))
    feeds = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    path = tmp_path_factory.mktemp("bert") / "bert.onnx"
    prog = torch.onnx.export(model, (), kwargs=feeds, dynamo=True, external_data=False, verbose=False,
                             input_names=list(feeds), output_names=["logits"])
    prog.save(str(path), external_data=False)
    return onnx.load(str(path))


def _weight_matmuls(proto) -> int:
    inits = {t.name for t in proto.graph.initializer}
    return sum(n.op_type == "MatMul" and any(i in inits for i in n.input) for n in proto.graph.node)


def test_dynamo_export_fuses_attention_and_keeps_outputs(tiny_bert_export):
    proto = tiny_bert_export
    result = OptimizePass()(from_proto(proto))
    out = to_proto(result.model)
    fused = result.details["fusions"]
    assert fused.get("MultiHeadAttention") == 2, fused  # one per layer: onnxruntime's fusions alone find none
    assert fused.get("SkipLayerNormalization", 0) >= 2, fused
    assert result.details["dynamo_rules"].get("mha") == 2
    # Attention stays unpacked: every projection MatMul of the float graph is still a MatMul with a weight.
    assert "Attention" not in fused and _weight_matmuls(out) >= _weight_matmuls(proto)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 100, (2, 16)).astype(np.int64)  # the export fixed batch 2
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    np.testing.assert_allclose(run_proto(out, feeds), run_proto(proto, feeds), rtol=1e-4, atol=1e-4)


def test_onnxruntime_fusions_alone_miss_dynamo_attention(tiny_bert_export):
    result = OptimizePass(OptimizePass.Config(dynamo_fusions=False))(from_proto(tiny_bert_export))
    assert "MultiHeadAttention" not in result.details["fusions"] and "Attention" not in result.details["fusions"]
