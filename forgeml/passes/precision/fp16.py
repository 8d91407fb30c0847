"""fp16: weights and compute in float16, model inputs and outputs kept float32 by default.

Uses onnxruntime's float16 converter (``onnxruntime.transformers.float16``, no extra dependency):
float initializers become float16, Cast nodes are inserted at the graph's edges (``keep_io_types``)
and around ops that must stay float32 (its default block list, e.g. range/shape-sensitive ops).
Judged against the float model with the fp16 budget; nodes that cost the most accuracy go on the
converter's node block list until the budget holds.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from forgeml.errors import PassError
from forgeml.passes.precision.base import BudgetConfig, PrecisionPass

# Ops that carry no float arithmetic worth a block-list entry when ranking accuracy costs.
_NO_MATH = {"Shape", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Constant",
            "Gather", "Concat", "Split", "Slice", "Cast"}


@dataclass(frozen=True)
class Fp16Config:
    keep_io_types: bool = True  # model inputs/outputs stay float32 (Casts at the edges)
    op_block_list: tuple[str, ...] | None = None  # None: the converter's default list
    budget: BudgetConfig = BudgetConfig()


class Fp16Pass(PrecisionPass):
    name = "fp16"
    Config = Fp16Config
    precision = "fp16"

    def candidates(self, proto) -> list[str]:
        import onnx

        floats = any(t.data_type == onnx.TensorProto.FLOAT for t in proto.graph.initializer) or any(
            i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in proto.graph.input)
        if not floats:
            return []
        return [n.name for n in proto.graph.node if n.op_type not in _NO_MATH]

    def no_candidates(self) -> str:
        return "the model has no float32 weights or inputs to convert to float16"

    def settings(self) -> dict:
        return {"keep_io_types": self.config.keep_io_types}

    def converter_kwargs(self, exclude: frozenset, *, shape_infer: bool = True) -> dict:
        """onnxruntime's ``convert_float_to_float16`` arguments for this config, ``exclude`` kept in float."""
        kwargs = {"keep_io_types": self.config.keep_io_types, "node_block_list": sorted(exclude) or None,
                  "disable_shape_infer": not shape_infer}
        if self.config.op_block_list is not None:
            kwargs["op_block_list"] = list(self.config.op_block_list)
        return kwargs

    def build(self, proto, exclude: frozenset, scratch: Path):
        from onnxruntime.transformers import float16
        kwargs = self.converter_kwargs(exclude)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # one "truncated" warning per tiny weight
                return float16.convert_float_to_float16(proto, **kwargs)
        except Exception as e:
            raise PassError(f"fp16: the float16 converter failed: {type(e).__name__}: {e}") from e
