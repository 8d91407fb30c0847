"""triton: ``model_repository/<name>/<version>/model.onnx`` plus ``model_repository/<name>/config.pbtxt``.

The runner proves the repository as Triton would read it: it loads the model file from the repository
in onnxruntime, checks the config's names, data types and dims against that session, then serves
parity. No Triton server runs here; tritonclient (optional, ``forgeml[triton]``) only lends the
model-config schema that validates the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from forgeml.errors import InputError, TargetError
from forgeml.fileio import write_bytes_atomic
from forgeml.targets.base import Artifact, TargetContext
from forgeml.targets.triton import config as pbtxt


@dataclass(frozen=True)
class TritonConfig:
    model_name: str | None = None  # None: from the source reference (``zoo:cnn`` -> ``cnn``)
    version: int = 1
    max_batch_size: int = 8  # used only when the batch dim is dynamic (else 0: whole tensors)


class TritonTarget:
    name = "triton"
    Config = TritonConfig
    suffixes = (".pbtxt",)

    def build(self, ir, out_dir: Path, ctx: TargetContext) -> Artifact:
        import onnx_ir

        cfg = ctx.config or TritonConfig()
        if cfg.version < 1:
            raise TargetError(f"triton: `TritonConfig.version` must be >= 1, not {cfg.version}")
        if cfg.max_batch_size < 1:
            raise TargetError(f"triton: `TritonConfig.max_batch_size` must be >= 1, not {cfg.max_batch_size}")
        name = cfg.model_name or model_name_from(ir.provenance.ref)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in (".", ".."):
            raise TargetError(f"triton: `TritonConfig.model_name` {name!r}: use letters, digits, '_', '.', '-'")
        model_dir = out_dir / "model_repository" / name
        (model_dir / str(cfg.version)).mkdir(parents=True, exist_ok=True)
        model = ir.model.clone()
        model.metadata_props.update({"forgeml.version": ctx.forgeml_version, "forgeml.source": ir.provenance.ref,
                                     "forgeml.precision": ir.precision})
        onnx_path = model_dir / str(cfg.version) / "model.onnx"
        proto = onnx_ir.serde.serialize_model(model)
        if proto.ByteSize() >= 2**31 - 1:
            raise TargetError("triton: the model is over protobuf's 2 GB limit; external data is not written yet")
        write_bytes_atomic(onnx_path, proto.SerializeToString())
        text = pbtxt.render(pbtxt.from_signature(ir.signature, name, cfg.max_batch_size))
        checked = pbtxt.validate(text)  # raises on a config Triton's schema rejects
        config_path = model_dir / "config.pbtxt"
        write_bytes_atomic(config_path, text.encode())
        meta = {"model_repository": "model_repository", "model_name": name, "version": cfg.version,
                "max_batch_size": pbtxt.from_signature(ir.signature, name, cfg.max_batch_size).max_batch_size}
        if checked is not None:
            meta["config_validated"] = f"tritonclient {_tritonclient_version()} model_config.proto"
        else:
            meta["config_validated"] = "skipped: tritonclient not installed (pip install 'forgeml[triton]')"
        return Artifact(self.name, onnx_path, [onnx_path, config_path], runtime=_ort_version(), metadata=meta)

    def runner(self, artifact: Artifact, ctx: TargetContext):
        from forgeml.runtime.ort import ort_runner

        config_path = artifact.path.parent.parent / "config.pbtxt"
        cfg = pbtxt.parse(config_path.read_text())
        run = ort_runner(artifact.path)
        pbtxt.check_session(cfg, run.session, str(config_path))
        return run, None

    def inspect(self, path: Path) -> dict:
        try:
            cfg = pbtxt.parse(Path(path).read_text())
        except (OSError, UnicodeDecodeError, TargetError) as e:
            raise InputError(f"{path}: not a readable Triton config.pbtxt ({e})") from e
        def spec(t) -> dict:
            return {"name": t.name, "shape": list(t.dims), "dtype": t.data_type}

        return {"format": "triton config.pbtxt", "path": str(path), "bytes": Path(path).stat().st_size,
                "name": cfg.name, "platform": cfg.platform, "max_batch_size": cfg.max_batch_size,
                "dynamic_batching": cfg.dynamic_batching, "validated": pbtxt.validate(Path(path).read_text()) is not None,
                "inputs": [spec(t) for t in cfg.inputs], "outputs": [spec(t) for t in cfg.outputs]}


def model_name_from(ref: str) -> str:
    """A repository-safe name from what the user named: ``zoo:cnn`` -> ``cnn``, ``dir/m.pt`` -> ``m``."""
    stem = Path(ref.rsplit(":", 1)[-1]).stem if ref else ""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "model"


def _ort_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


def _tritonclient_version() -> str:
    from importlib.metadata import version

    return version("tritonclient")
