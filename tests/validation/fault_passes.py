"""A test-only pass for the localization tests: a planted fault.

``PlantWrongWeight`` multiplies one initializer, the way a buggy rewrite would corrupt a weight.
"""

from __future__ import annotations

import dataclasses

import onnx_ir
from onnx_ir.passes import PassResult

from forgeml.passes.base import ForgePass


@dataclasses.dataclass(frozen=True)
class PlantConfig:
    initializer: str = ""
    scale: float = 1.5


class PlantWrongWeight(ForgePass):
    name = "plant-wrong-weight"
    Config = PlantConfig

    def call(self, model):
        model = model.clone()
        init = model.graph.initializers[self.config.initializer]
        init.const_value = onnx_ir.tensor(init.const_value.numpy() * self.config.scale, name=init.name)
        return PassResult(model, True)


def weight_of_module(model: onnx_ir.Model, module: str, op: str = "MatMul") -> tuple[str, str]:
    """(initializer name, node name) of the ``op`` node the exporter placed in ``module``'s scope."""
    import ast

    for node in model.graph:
        scopes = node.metadata_props.get("pkg.torch.onnx.name_scopes")
        if node.op_type == op and scopes and module in ast.literal_eval(scopes):
            for v in node.inputs:
                if v is not None and v.name in model.graph.initializers:
                    return v.name, node.name
    raise LookupError(f"no {op} with a weight in module {module}")
