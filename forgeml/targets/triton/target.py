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
from forgeml.targets.base import Artifact, OpenContext, Opened, TargetContext, checked
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
        return _served(artifact.path.parent.parent / "config.pbtxt", artifact.path), None

    def open(self, path: Path, ctx: OpenContext) -> Opened:
        """A repository's ``config.pbtxt``: its newest version's model.onnx in onnxruntime, checked against
        the config as Triton would load it; the signature is the config's."""
        import onnxruntime

        from forgeml.errors import require_file

        path = require_file(Path(path))
        versions = sorted((int(d.name), d) for d in path.parent.iterdir()
                          if d.is_dir() and d.name.isdigit() and (d / "model.onnx").is_file())
        if not versions:
            raise InputError(f"{path}: no <version>/model.onnx beside this config.pbtxt (a Triton model "
                             "directory holds config.pbtxt and numbered version folders)")
        import onnx_ir

        from forgeml.formats import onnx_file
        from forgeml.ir import signature_of

        model = versions[-1][1] / "model.onnx"
        run = _served(path, model)  # loads and checks the file first: a corrupt one fails there, in one line
        proto = onnx_file.load(model, external=False)
        sig = signature_of(onnx_ir.serde.deserialize_model(proto))
        meta = {p.key: p.value for p in proto.metadata_props}
        return Opened(run, sig, f"onnxruntime {onnxruntime.__version__} (Triton repository)",
                      meta.get("forgeml.precision"))

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


def _served(config_path: Path, model: Path):
    """onnxruntime over the repository's model file, after the config's names, types and dims are checked
    against the session; guarded by the package's signature.json (beside ``model_repository/``)."""
    from forgeml.runtime.ort import ort_runner

    cfg = pbtxt.parse(config_path.read_text())
    run = ort_runner(model)
    pbtxt.check_session(cfg, run.session, str(config_path))
    return checked(run, model, package=config_path.parent.parent.parent)


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
