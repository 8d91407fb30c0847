"""Converters: import a source model into ONNX IR, and keep a runner for the *original* model.

``CONVERTERS`` is the one table of converters; ``forgeml.sources`` picks one for what the user named.
A converter module imports its framework lazily, inside its functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from forgeml.ir import TensorSpec

if TYPE_CHECKING:
    from forgeml.ir import IRModel
    from forgeml.validation import InputSet, Runner


@dataclass(frozen=True)
class ImportOptions:
    """How to import: the options every converter understands (a converter ignores what it can't use)."""

    dynamic_batch: bool = False
    input_specs: tuple[TensorSpec, ...] = ()  # from --input, for sources that don't carry example inputs
    output_names: tuple[str, ...] = ()  # names for the source model's outputs, in order
    opset: int | None = None
    trust_pickle: bool = False
    signature: str | None = None  # SavedModel serving signature to convert (default: serving_default)


class SourceWeights(Protocol):
    """The source model's weights under its own parameter names, and a way to run it with others.

    The safetensors target writes ``named()`` and proves the file by loading it back through
    ``runner_with``: the source model with the file's weights, in the source framework.
    """

    framework: str

    def named(self) -> dict[str, np.ndarray]: ...

    def runner_with(self, weights: dict[str, np.ndarray]) -> Runner: ...


@dataclass
class ConvertResult:
    ir: IRModel
    reference: Runner  # runs the original model in its own framework
    reference_name: str  # e.g. "torch 2.13.0 eager"
    example_inputs: InputSet
    weights: SourceWeights | None = None
    source_model: object | None = None  # the original in-memory model (torch module, …), when there is one
    checkpoint: Path | None = None  # the source checkpoint on disk (hf dirs), for targets that stream from it


class Converter(Protocol):
    name: str
    suffixes: tuple[str, ...]  # file suffixes it reads

    def accepts(self, obj: object) -> bool:
        """Whether an in-memory object is a model of this converter's framework."""

    def convert(self, source: object, example_inputs: InputSet | None, ref: str,
                options: ImportOptions) -> ConvertResult:
        """``source`` is an in-memory model or a ``pathlib.Path``."""


def _table() -> dict[str, Converter]:
    from forgeml.converters.onnx import OnnxConverter
    from forgeml.converters.hf import HFConverter
    from forgeml.converters.sklearn import SklearnConverter
    from forgeml.converters.tensorflow import TensorflowConverter
    from forgeml.converters.torch import TorchConverter

    # hf before torch: a transformers causal LM is also a torch module, and in-memory models go to the first taker.
    return {c.name: c for c in (HFConverter(), TorchConverter(), OnnxConverter(), TensorflowConverter(),
                                SklearnConverter())}


CONVERTERS: dict[str, Converter] = _table()
