"""The package files beside the artifacts: signature.json (IR signature + source labels),
requirements-<target>.txt (the runtime that ran parity, pinned) and model_card.md (from the manifest)."""

from __future__ import annotations

import json

import forgeml


def test_signature_json_names_dynamic_dims(tmp_path):
    conv = forgeml.convert("zoo:cnn", targets=["onnx"], out_dir=tmp_path / "o", passes=[],
                           options=forgeml.ImportOptions(dynamic_batch=True))
    sig = json.loads((conv.out_dir / "signature.json").read_text())
    assert sig["schema"] == "forgeml.signature/1"
    assert [t["name"] for t in sig["inputs"]] == conv.ir.signature.input_names
    assert [t["name"] for t in sig["outputs"]] == conv.ir.signature.output_names
    x = sig["inputs"][0]
    assert x["dtype"] == "float32" and isinstance(x["shape"][0], str) and x["shape"][1:] == [3, 32, 32]
    assert "labels" not in sig  # a torch module carries no class names

    import onnxruntime

    req = (conv.out_dir / "requirements-onnx.txt").read_text().splitlines()
    assert [x for x in req if not x.startswith("#")] == [f"onnxruntime=={onnxruntime.__version__}"]

    card = (conv.out_dir / "model_card.md").read_text()
    art = conv.manifest["artifacts"]["onnx"]
    assert art["sha256"] in card and f"{art['bytes']:,}" in card and "zoo:cnn" in card
    assert "**PASS**" in card and "| onnx | fp32 |" in card


def test_signature_json_carries_classifier_labels(tmp_path):
    conv = forgeml.convert("zoo:sk_iris", targets=["onnx"], out_dir=tmp_path / "o", passes=[])
    sig = json.loads((conv.out_dir / "signature.json").read_text())
    from models_zoo import ZOO

    fitted = ZOO["sk_iris"].build().model
    assert sig["labels"] == [str(c) for c in fitted.classes_]
    assert len(sig["labels"]) == 3
