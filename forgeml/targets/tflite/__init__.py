"""tflite: a .tflite for phones and microcontrollers, checked in the real TFLite interpreter."""

from forgeml.targets.tflite.target import TFLiteTarget  # noqa: F401
