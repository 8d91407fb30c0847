"""onnx: the IR as one .onnx file, with its weights in ``model.onnx.data`` beside it once the model
passes protobuf's 2 GB limit (or always/never, as configured)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from forgeml.errors import TargetError
from forgeml.fileio import write_bytes_atomic
from forgeml.targets import Artifact, TargetContext
from forgeml.validation.ort_runner import PROTOBUF_LIMIT, weight_bytes


@dataclass(frozen=True)
class OnnxConfig:
    external_data: str = "auto"  # auto | always | never
    size_threshold: int = 1024  # with external data: tensors smaller than this stay inside the .onnx


class OnnxTarget:
    name = "onnx"
    Config = OnnxConfig
    filename = "model.onnx"

    def build(self, ir, out_dir: Path, ctx: TargetContext) -> Artifact:
        import onnx_ir

        cfg = ctx.config or OnnxConfig()
        if cfg.external_data not in ("auto", "always", "never"):
            raise TargetError(f"onnx: external_data must be auto, always or never, not {cfg.external_data!r}")
        too_big = weight_bytes(ir.model) >= PROTOBUF_LIMIT - (64 << 20)
        external = cfg.external_data == "always" or (cfg.external_data == "auto" and too_big)
        if too_big and not external:
            raise TargetError("onnx: the model is over protobuf's 2 GB limit and external_data='never'; "
                              "use external_data='auto'")
        model = ir.model.clone()  # the metadata below must not leak into the pipeline's IR
        model.metadata_props.update({
            "forgeml.version": ctx.forgeml_version, "forgeml.source": ir.provenance.ref,
            "forgeml.source_sha256": ir.provenance.sha256, "forgeml.precision": ir.precision})
        path = out_dir / self.filename
        if not external:
            write_bytes_atomic(path, onnx_ir.serde.serialize_model(model).SerializeToString())
            return Artifact(self.name, path, [path], runtime=_ort_version())
        data = out_dir / (self.filename + ".data")
        tmp = out_dir / f".{self.filename}.tmp"
        onnx_ir.save(model, tmp, external_data=data.name, size_threshold_bytes=cfg.size_threshold)
        tmp.replace(path)
        return Artifact(self.name, path, [path, data], runtime=_ort_version(),
                        metadata={"external_data": data.name})

    def runner(self, artifact: Artifact, ctx: TargetContext):
        from forgeml.validation.ort_runner import ort_runner

        return ort_runner(artifact.path), None


def _ort_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"
