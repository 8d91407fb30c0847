"""tensorrt: a serialized TensorRT engine built from the ONNX IR, executed back for parity."""

from forgeml.targets.tensorrt.target import TensorRTTarget, TensorRTConfig  # noqa: F401
