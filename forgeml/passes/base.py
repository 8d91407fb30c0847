"""The pass base class and the ModelProto edges that library-backed passes need."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import onnx_ir
from onnx_ir.passes import FunctionalPass, PassResult

__all__ = ["ForgePass", "PassResult", "from_proto", "to_proto"]


class ForgePass(FunctionalPass):
    """Base of forgeml's passes: a name for the CLI and manifest, and a typed config dataclass."""

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config=None, **kwargs):
        if config is not None and kwargs:
            raise TypeError("give either a config object or keyword options, not both")
        self.config = config if config is not None else self.Config(**kwargs)

    def config_json(self) -> dict:
        return dataclasses.asdict(self.config)

    def output_precision(self, precision: str) -> str:
        """The precision the graph computes in after this pass (picks the parity profile)."""
        return precision

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def to_proto(model: onnx_ir.Model):
    return onnx_ir.serde.serialize_model(model)


def from_proto(proto) -> onnx_ir.Model:
    return onnx_ir.serde.deserialize_model(proto)
