"""triton: a Triton Inference Server model repository (the ONNX plus a ``config.pbtxt`` from the signature)."""

from forgeml.targets.triton.target import TritonTarget  # noqa: F401
