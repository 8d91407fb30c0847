"""Test-only passes for the report and localization tests: a real int8 quantizer and a planted fault.

``OrtDynamicInt8`` runs onnxruntime's own dynamic int8 quantizer, so the report shows what a real
int8 model computes (forgeml's quantization passes will replace it once they land).
``PlantWrongWeight`` multiplies one initializer, the way a buggy rewrite would corrupt a weight.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import onnx_ir
from onnx_ir.passes import PassResult

from forgeml.passes.base import ForgePass, from_proto, to_proto


@dataclasses.dataclass(frozen=True)
class OrtInt8Config:
    per_channel: bool = False


class OrtDynamicInt8(ForgePass):
    name = "ort-int8-dynamic"
    Config = OrtInt8Config

    def output_precision(self, precision: str) -> str:
        return "int8"

    def call(self, model):
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory() as d:
            src, dst = Path(d) / "in.onnx", Path(d) / "out.onnx"
            onnx.save_model(to_proto(model), str(src))
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=self.config.per_channel)
            return PassResult(from_proto(onnx.load(str(dst))), True)


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
