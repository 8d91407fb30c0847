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


__all__ = ["ForgePass", "PassInputs", "DetailedPassResult", "PassResult", "from_proto", "to_proto", "tool_proto",
           "from_tool"]


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


def tool_proto(model: onnx_ir.Model):
    """``(proto, held)`` for a library that takes a ModelProto (the checker, shape inference, onnxsim).

    A model past protobuf's limit (``forgeml.ir.is_large``) comes with its weights held out as graph
    inputs of their type and shape (``held``: the tensors, by name), so the proto is small and the tool
    never reads a weight; ``from_tool`` puts them back. A smaller model whose weights are still in their
    external-data files comes with them read in (``held`` is empty), as the tool would need them."""
    from onnx_ir.external_data import load_to_model

    from forgeml.ir import hold_out, is_large

    if is_large(model):
        return hold_out(model, as_inputs=True)
    if any(isinstance(v.const_value, onnx_ir.ExternalTensor) for v in model.graph.initializers.values()):
        model = load_to_model(model.clone())
    return to_proto(model), {}


def from_tool(proto, held: dict) -> onnx_ir.Model:
    """The IR of a tool's output for a proto from ``tool_proto``, held-out weights back in place."""
    from forgeml.ir import restore

    return restore(proto, held) if held else from_proto(proto)
