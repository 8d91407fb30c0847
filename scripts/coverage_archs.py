"""The outside architectures ``scripts/coverage.py`` sweeps: each builds a model nobody on the project
wrote (torchvision, timm, transformers from a config, keras.applications, or a trained model shipped
inside a PyPI wheel) with random weights (or the wheel's own) and a small example input.

Sizes are cut where the constructor takes it (image side 64, fewer classes, a narrow/shallow variant
of the same family) so the sweep runs on a 2-core machine; the layer types and the graph pattern are
the architecture's own.

torchvision: PyPI's 0.28.0 wheel is built against CUDA torch, and with this project's CPU torch its
``import`` fails while ``torchvision._meta_registrations`` registers meta kernels for its C ops
(``torchvision::nms``). The classification and segmentation models are pure Python and never call
those ops, so ``_import_torchvision`` puts an empty module in that name's place before importing
torchvision — in this process only. torchvision and timm live in their own folder (``--extra``, put
on ``sys.path`` by the script), never in the project's venv, where transformers would probe the
broken torchvision.
"""

from __future__ import annotations

import sys
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

SIDE = 64


@dataclass(frozen=True)
class Arch:
    name: str
    source: str  # torchvision | timm | transformers | keras | wheel
    build: Callable  # () -> (model or path, example_inputs)
    kind: str = "vision"  # vision | text | audio | segmentation | ocr


def _import_torchvision():
    """torchvision with the meta-kernel registration stubbed out (see the module docstring); timm imports
    torchvision too when it is on the path, so its rows come through here first."""
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import torchvision

    return torchvision


def _image(side: int = SIDE, channels_last: bool = False):
    rng = np.random.default_rng(0)
    shape = (1, side, side, 3) if channels_last else (1, 3, side, side)
    return rng.normal(size=shape).astype("float32")


def _tv(fn: str, side: int = SIDE, **kw):
    def build():
        import torch

        tv = _import_torchvision()
        torch.manual_seed(0)
        ctor = getattr(tv.models.segmentation, fn, None) or getattr(tv.models, fn)
        return ctor(weights=None, **kw).eval(), (torch.from_numpy(_image(side)),)

    return build


def _timm(fn: str, side: int = SIDE, **kw):
    def build():
        _import_torchvision()
        import timm
        import torch

        torch.manual_seed(0)
        return timm.create_model(fn, pretrained=False, **kw).eval(), (torch.from_numpy(_image(side)),)

    return build


def _timm_cls(path: str, side: int = SIDE, **kw):
    """A timm model class built directly with a small configuration of its own family."""

    def build():
        import importlib

        import torch

        _import_torchvision()
        mod, cls = path.rsplit(".", 1)
        torch.manual_seed(0)
        return getattr(importlib.import_module(mod), cls)(**kw).eval(), (torch.from_numpy(_image(side)),)

    return build


def _hf(config_cls: str, model_cls: str, inputs: str, **cfg):
    """A transformers model from a small config (random weights), with example inputs of ``inputs``
    kind: ids (token ids + attention mask), pixels, or audio (raw waveform)."""

    def build():
        import torch
        import transformers

        torch.manual_seed(0)
        config = getattr(transformers, config_cls)(**cfg)
        model = getattr(transformers, model_cls)(config).eval()
        rng = np.random.default_rng(0)
        if inputs == "ids":
            ids = torch.from_numpy(rng.integers(0, config.vocab_size, size=(1, 16)).astype("int64"))
            return model, (ids, torch.ones_like(ids))
        if inputs == "pixels":
            side = getattr(config, "image_size", SIDE)
            side = side[0] if isinstance(side, (list, tuple)) else side
            return model, (torch.from_numpy(_image(side)),)
        return model, (torch.from_numpy(rng.normal(size=(1, 4000)).astype("float32")),)

    return build


def _keras(fn: str, side: int = 96, **kw):
    def build():
        import keras

        keras.utils.set_random_seed(0)
        model = getattr(keras.applications, fn)(weights=None, input_shape=(side, side, 3), classes=10, **kw)
        return model, (_image(side, channels_last=True),)

    return build


WHEELS = {"silero-vad": "silero_vad-6.2.3-py3-none-any.whl", "rapidocr": "rapidocr-3.10.0-py3-none-any.whl"}


def wheel_member(extra: Path, wheel: str, member: str, scratch: Path) -> Path:
    """``member`` of a cached wheel, extracted under ``scratch`` (the wheels are fetched once, by
    ``pip download --no-deps``, into ``EXTRA/wheels``: the sweep itself runs offline)."""
    path = extra / "wheels" / WHEELS[wheel]
    if not path.exists():
        raise FileNotFoundError(f"{path.name} is not in {path.parent}: run `pip download --no-deps "
                                f"{wheel}=={path.name.split('-')[1]} -d {path.parent}` once (online)")
    out = scratch / Path(member).name
    with zipfile.ZipFile(path) as z:
        out.write_bytes(z.read(member))
    return out


def _silero_jit(extra: Path, scratch: Path):
    import torch

    path = wheel_member(extra, "silero-vad", "silero_vad/data/silero_vad.jit", scratch)
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, size=(1, 512)).astype("float32"))
    return path, (x, torch.tensor(16000))


def _silero_onnx(extra: Path, scratch: Path):
    path = wheel_member(extra, "silero-vad", "silero_vad/data/silero_vad.onnx", scratch)
    rng = np.random.default_rng(0)
    return path, {"input": rng.normal(0, 0.1, size=(1, 512)).astype("float32"),
                  "state": np.zeros((2, 1, 128), "float32"), "sr": np.array(16000, "int64")}


def _ocr(member: str, shape: tuple[int, ...]):
    def build(extra: Path, scratch: Path):
        path = wheel_member(extra, "rapidocr", f"rapidocr/models/{member}", scratch)
        return path, {"x": np.random.default_rng(0).uniform(-1, 1, size=shape).astype("float32")}

    return build


ARCHS: list[Arch] = [
    # torchvision (pure-Python models; see the module docstring for the import route)
    Arch("torchvision resnet18", "torchvision", _tv("resnet18", num_classes=10)),
    Arch("torchvision mobilenet_v3_small", "torchvision", _tv("mobilenet_v3_small", num_classes=10)),
    Arch("torchvision mobilenet_v2", "torchvision", _tv("mobilenet_v2", num_classes=10)),
    Arch("torchvision efficientnet_b0", "torchvision", _tv("efficientnet_b0", num_classes=10)),
    Arch("torchvision regnet_x_400mf", "torchvision", _tv("regnet_x_400mf", num_classes=10)),
    Arch("torchvision densenet121", "torchvision", _tv("densenet121", num_classes=10)),
    Arch("torchvision shufflenet_v2_x0_5", "torchvision", _tv("shufflenet_v2_x0_5", num_classes=10)),
    Arch("torchvision mnasnet0_5", "torchvision", _tv("mnasnet0_5", num_classes=10)),
    Arch("torchvision squeezenet1_1", "torchvision", _tv("squeezenet1_1", num_classes=10)),
    Arch("torchvision lraspp_mobilenet_v3_large", "torchvision",
         _tv("lraspp_mobilenet_v3_large", num_classes=5, weights_backbone=None), "segmentation"),
    # timm
    Arch("timm convnext_atto", "timm", _timm("convnext_atto", num_classes=10)),
    Arch("timm deit_tiny (img 64, patch 16)", "timm", _timm("deit_tiny_patch16_224", img_size=SIDE, num_classes=10)),
    Arch("timm vit (depth 2, dim 64)", "timm", _timm_cls("timm.models.vision_transformer.VisionTransformer",
                                                          img_size=SIDE, patch_size=8, embed_dim=64, depth=2,
                                                          num_heads=2, num_classes=10)),
    Arch("timm swin (window 4, dims 32/64)", "timm", _timm_cls("timm.models.swin_transformer.SwinTransformer",
                                                                img_size=SIDE, patch_size=4, window_size=4,
                                                                embed_dim=32, depths=(2, 2), num_heads=(2, 4),
                                                                num_classes=10)),
    Arch("timm mobilevit_xxs", "timm", _timm("mobilevit_xxs", num_classes=10)),
    Arch("timm efficientnet_b0", "timm", _timm("efficientnet_b0", num_classes=10)),
    Arch("timm mobilenetv3_small_050", "timm", _timm("mobilenetv3_small_050", num_classes=10)),
    Arch("timm regnety_002", "timm", _timm("regnety_002", num_classes=10)),
    Arch("timm ghostnet_050", "timm", _timm("ghostnet_050", num_classes=10)),
    Arch("timm mixer (MLP-Mixer, depth 2)", "timm", _timm_cls("timm.models.mlp_mixer.MlpMixer", img_size=SIDE,
                                                              patch_size=8, embed_dim=64, num_blocks=2,
                                                              num_classes=10)),
    Arch("timm levit_128s", "timm", _timm("levit_128s", img_size=SIDE, num_classes=10)),
    Arch("timm resnet18d", "timm", _timm("resnet18d", num_classes=10)),
    # transformers, from configs
    Arch("transformers BertModel", "transformers",
         _hf("BertConfig", "BertModel", "ids", vocab_size=1000, hidden_size=64, num_hidden_layers=2,
             num_attention_heads=2, intermediate_size=128), "text"),
    Arch("transformers DistilBertModel", "transformers",
         _hf("DistilBertConfig", "DistilBertModel", "ids", vocab_size=1000, dim=64, n_layers=2, n_heads=2,
             hidden_dim=128), "text"),
    Arch("transformers RobertaForSequenceClassification", "transformers",
         _hf("RobertaConfig", "RobertaForSequenceClassification", "ids", vocab_size=1000, hidden_size=64,
             num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, num_labels=3), "text"),
    Arch("transformers ViTForImageClassification", "transformers",
         _hf("ViTConfig", "ViTForImageClassification", "pixels", image_size=SIDE, patch_size=8, hidden_size=64,
             num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, num_labels=10)),
    Arch("transformers ConvNextModel", "transformers",
         _hf("ConvNextConfig", "ConvNextModel", "pixels", hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1])),
    Arch("transformers SegformerForSemanticSegmentation", "transformers",
         _hf("SegformerConfig", "SegformerForSemanticSegmentation", "pixels", hidden_sizes=[16, 32, 64, 128],
             depths=[1, 1, 1, 1], num_labels=5, decoder_hidden_size=64), "segmentation"),
    Arch("transformers Wav2Vec2Model", "transformers",
         _hf("Wav2Vec2Config", "Wav2Vec2Model", "audio", hidden_size=64, num_hidden_layers=2,
             num_attention_heads=2, intermediate_size=128, conv_dim=(32, 32, 32), conv_stride=(5, 4, 2),
             conv_kernel=(10, 4, 2), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4), "audio"),
    # keras.applications(weights=None)
    Arch("keras MobileNetV2 (alpha 0.35)", "keras", _keras("MobileNetV2", alpha=0.35)),
    Arch("keras EfficientNetV2B0", "keras", _keras("EfficientNetV2B0")),
    Arch("keras DenseNet121", "keras", _keras("DenseNet121")),
    Arch("keras NASNetMobile", "keras", _keras("NASNetMobile", side=96)),
    # trained models shipped inside PyPI wheels (the package's own weights)
    Arch("silero-vad TorchScript (.jit)", "wheel", _silero_jit, "audio"),
    Arch("silero-vad ONNX", "wheel", _silero_onnx, "audio"),
    Arch("rapidocr PP-OCRv6 det (ONNX)", "wheel", _ocr("PP-OCRv6_det_small.onnx", (1, 3, 64, 64)), "ocr"),
    Arch("rapidocr PP-OCRv6 rec (ONNX)", "wheel", _ocr("PP-OCRv6_rec_small.onnx", (1, 3, 48, 160)), "ocr"),
    Arch("rapidocr ppocr cls mobile (ONNX)", "wheel", _ocr("ch_ppocr_mobile_v2.0_cls_mobile.onnx", (1, 3, 48, 192)),
         "ocr"),
]

NEEDS = {"torchvision": ("torchvision",), "timm": ("timm", "torchvision"), "transformers": ("transformers",),
         "keras": ("keras", "tensorflow"), "wheel": ()}
