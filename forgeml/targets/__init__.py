"""Targets: each one package under ``targets/`` (build, runner, and the readers and checks of its own
artifact kind), and ``TARGETS``, the one table mapping ``targets`` names to them. The contract is in
``targets/base.py``.
"""

from __future__ import annotations

from forgeml.targets.base import Artifact, Target, TargetContext  # noqa: F401  (the contract, re-exported)


from forgeml.targets.gguf import GgufTarget  # noqa: E402
from forgeml.targets.onnx import OnnxTarget  # noqa: E402
from forgeml.targets.safetensors import SafetensorsTarget  # noqa: E402
from forgeml.targets.tensorrt import TensorRTTarget  # noqa: E402
from forgeml.targets.tflite import TFLiteTarget  # noqa: E402
from forgeml.targets.torch_aoti import TorchAOTITarget  # noqa: E402
from forgeml.targets.triton import TritonTarget  # noqa: E402

# The one table: a target is its folder plus its line here.
TARGETS: dict[str, Target] = {t.name: t for t in (
    OnnxTarget(),
    SafetensorsTarget(),
    TensorRTTarget(),
    TorchAOTITarget(),
    GgufTarget(),
    TFLiteTarget(),
    TritonTarget(),
)}
