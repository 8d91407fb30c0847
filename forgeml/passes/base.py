"""The pass base class and the ModelProto edges that library-backed passes need."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, ClassVar

import onnx_ir
from onnx_ir.passes import FunctionalPass, PassResult

if TYPE_CHECKING:
    from forgeml.ir import Signature
    from forgeml.runtime import InputSet


@dataclass(frozen=True)
class PassInputs:
    """What the pipeline knows about the model's inputs, for passes that must run the model
    (calibration, accuracy budgets). Handed over by ``ForgePass.bind`` before the pass runs."""

    example: InputSet
    signature: Signature
    calibration: tuple[InputSet, ...] = ()  # the user's representative inputs, batched for the model
    seed: int = 0
    progress: Callable[[int, int], None] | None = None  # (done, total) from long loops such as calibration


@dataclass
class DetailedPassResult(PassResult):
    """A ``PassResult`` with what the pass wants the manifest to say (fusions fired, nodes kept, …)."""

    details: dict = field(default_factory=dict)


__all__ = ["ForgePass", "PassInputs", "DetailedPassResult", "PassResult", "from_proto", "to_proto"]


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

    def bind(self, inputs: PassInputs) -> ForgePass:
        """This pass, given the model's inputs; passes that run the model return a bound copy."""
        return self

    def output_precision(self, precision: str) -> str:
        """The precision the graph computes in after this pass (picks the parity profile)."""
        return precision

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def to_proto(model: onnx_ir.Model):
    return onnx_ir.serde.serialize_model(model)


def from_proto(proto) -> onnx_ir.Model:
    return onnx_ir.serde.deserialize_model(proto)
