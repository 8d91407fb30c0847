"""onnx: the IR as one .onnx file, with its weights in ``model.onnx.data`` beside it once the model"""

from forgeml.targets.onnx.target import OnnxTarget  # noqa: F401
