"""What a converter is: ``Converter`` (import a source into ONNX IR and keep a runner for the original)
and ``ImportOptions``, the options every converter understands. Its result, ``ConvertResult``, lives in
``forgeml.ir`` because targets and parity read it too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from forgeml.ir import TensorSpec

if TYPE_CHECKING:
    from forgeml.ir import ConvertResult
    from forgeml.runtime import InputSet


@dataclass(frozen=True)
class ImportOptions:
    """How to import: the options every converter understands (a converter ignores what it can't use)."""

    dynamic_batch: bool = False
    input_specs: tuple[TensorSpec, ...] = ()  # from `options.input_specs`, for sources that don't carry example inputs
    output_names: tuple[str, ...] = ()  # names for the source model's outputs, in order
    opset: int | None = None
    trust_pickle: bool = False
    signature: str | None = None  # SavedModel serving signature to convert (default: serving_default)
    kv_cache: bool = True  # causal LMs: export the decoder with its KV cache (False: input_ids -> logits)


class Converter(Protocol):
    name: str
    suffixes: tuple[str, ...]  # file suffixes it reads

    def accepts(self, obj: object) -> bool:
        """Whether an in-memory object is a model of this converter's framework."""

    def convert(self, source: object, example_inputs: InputSet | None, ref: str,
                options: ImportOptions) -> ConvertResult:
        """``source`` is an in-memory model or a ``pathlib.Path``."""
