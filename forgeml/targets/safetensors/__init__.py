"""safetensors: the source model's weights under the source framework's own parameter names."""

from forgeml.targets.safetensors.target import SafetensorsTarget  # noqa: F401
