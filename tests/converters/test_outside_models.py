"""Architectures nobody on the project wrote, as users bring them (the sweep in ``scripts/coverage.py``
lists many more in ``docs/coverage.md``; these are a few representative ones, small).

transformers models are built from small configs and passed in as they are (a ``ModelOutput``-
returning module); Keras applications with ``weights=None``. torchvision is not in the project's
environment (its PyPI wheel is built for CUDA torch), so its test runs only where it imports.
"""

from __future__ import annotations

import numpy as np
import pytest

import forgeml


def _image(side: int, channels_last: bool = False) -> np.ndarray:
    shape = (1, side, side, 3) if channels_last else (1, 3, side, side)
    return np.random.default_rng(0).normal(size=shape).astype("float32")


@pytest.mark.slow
def test_transformers_vit_classifier(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=64, num_labels=5)
    model = transformers.ViTForImageClassification(cfg).eval()
    r = forgeml.convert(model, (torch.from_numpy(_image(32)),), targets=["onnx"], out_dir=tmp_path / "o",
                        parity=forgeml.ParityOptions(batches=1))
    assert r.ok, r.parity.table()
    assert r.manifest["signature"]["outputs"][0]["shape"][-1] == 5


@pytest.mark.slow
def test_transformers_bert_encoder_int8(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64)
    model = transformers.BertModel(cfg).eval()
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, 200, size=(1, 12)).astype("int64"))
    r = forgeml.convert(model, (ids, torch.ones_like(ids)), targets=["onnx"], quantize="int8",
                        out_dir=tmp_path / "o", parity=forgeml.ParityOptions(batches=1))
    float_stages = [s for s in r.manifest["stages"] if s["kind"] != "target" and not s["name"].startswith("int8")]
    assert all(s["parity"]["passed"] for s in float_stages), r.parity.table()
    assert any(s["name"].startswith("int8") for s in r.manifest["stages"])


@pytest.mark.slow
def test_keras_application_without_weights(tmp_path):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3), alpha=0.35, classes=5)
    r = forgeml.convert(model, (_image(64, channels_last=True),), targets=["onnx"], out_dir=tmp_path / "o",
                        parity=forgeml.ParityOptions(batches=1))
    assert r.ok, r.parity.table()


@pytest.mark.slow
def test_torchvision_classifier(tmp_path):
    torch = pytest.importorskip("torch")
    try:
        from torchvision import models
    except Exception as e:  # not installed, or its CUDA-built C ops fail to register on CPU torch
        pytest.skip(f"torchvision does not import here ({type(e).__name__}); scripts/coverage.py sweeps it "
                    "from a separate folder")
    torch.manual_seed(0)
    model = models.shufflenet_v2_x0_5(weights=None, num_classes=5).eval()
    r = forgeml.convert(model, (torch.from_numpy(_image(64)),), targets=["onnx"], out_dir=tmp_path / "o",
                        parity=forgeml.ParityOptions(batches=1))
    assert r.ok, r.parity.table()
