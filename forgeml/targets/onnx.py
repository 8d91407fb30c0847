"""onnx: the IR as a single .onnx file (external data beside it once it passes protobuf's 2 GB limit)."""

from __future__ import annotations

from pathlib import Path

from forgeml.fileio import write_bytes_atomic
from forgeml.targets import Artifact, TargetContext

_PROTOBUF_LIMIT = 2**31 - 1


class OnnxTarget:
    name = "onnx"
    Config = None
    filename = "model.onnx"

    def build(self, ir, out_dir: Path, ctx: TargetContext) -> Artifact:
        import onnx

        proto = ir.to_proto()
        meta = {"forgeml.version": ctx.forgeml_version, "forgeml.source": ir.provenance.ref,
                "forgeml.source_sha256": ir.provenance.sha256, "forgeml.precision": ir.precision}
        kept = [p for p in proto.metadata_props if p.key not in meta]
        del proto.metadata_props[:]
        proto.metadata_props.extend(kept)
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        path = out_dir / self.filename
        files = [path]
        if proto.ByteSize() < _PROTOBUF_LIMIT:
            write_bytes_atomic(path, proto.SerializeToString())
        else:
            data_name = self.filename + ".data"
            tmp = out_dir / f".{self.filename}.tmp"
            onnx.save_model(proto, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=1024)
            tmp.replace(path)
            files.append(out_dir / data_name)
        return Artifact(self.name, path, files, runtime=_ort_version())

    def runner(self, artifact: Artifact, ctx: TargetContext):
        from forgeml.validation.ort_runner import ort_runner

        return ort_runner(artifact.path), None


def _ort_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"
