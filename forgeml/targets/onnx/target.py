"""onnx: the IR as one .onnx file, with its weights in ``model.onnx.data`` beside it once the model
passes protobuf's 2 GB limit (or always/never, as configured). An encoder-decoder is written as two
files (``seq2seq.py``). A KV-cache decoder also gets onnxruntime-genai's ``genai_config.json`` and its tokenizer files beside it (``genai.py``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forgeml.errors import TargetError
from forgeml.fileio import write_bytes_atomic
from forgeml.targets.base import Artifact, OpenContext, Opened, TargetContext, checked
from forgeml.ir import is_large


@dataclass(frozen=True)
class OnnxConfig:
    external_data: str = "auto"  # auto (past 2 GB, or quantized from a model that was) | always | never
    size_threshold: int = 1024  # with external data: tensors smaller than this stay inside the .onnx


class OnnxTarget:
    name = "onnx"
    Config = OnnxConfig
    suffixes = (".onnx",)

    def inspect(self, path: Path) -> dict:
        return inspect_onnx(path)

    def open(self, path: Path, ctx: OpenContext) -> Opened:
        return open_onnx(path)
    filename = "model.onnx"

    def build(self, ir, out_dir: Path, ctx: TargetContext) -> Artifact:
        import onnx_ir

        cfg = ctx.config or OnnxConfig()
        if cfg.external_data not in ("auto", "always", "never"):
            raise TargetError(f"onnx: external_data must be auto, always or never, not {cfg.external_data!r}")
        too_big = is_large(ir.model)
        # a model quantized from one past the limit keeps its weights out of the proto too (written a tensor
        # at a time from the pass's mapped scratch file, never gathered into one in-memory protobuf)
        from_large = ctx.float_ir is not None and ctx.float_ir.model is not None and is_large(ctx.float_ir.model)
        external = cfg.external_data == "always" or (cfg.external_data == "auto" and (too_big or from_large))
        if too_big and not external:
            raise TargetError("onnx: the model is over protobuf's 2 GB limit and external_data='never'; "
                              "use external_data='auto'")
        model = ir.model.clone()  # the metadata below must not leak into the pipeline's IR
        opsets = sorted(model.opset_imports.items())  # one order whatever order passes added domains in
        model.opset_imports.clear()
        model.opset_imports.update(opsets)
        model.metadata_props.update({
            "forgeml.version": ctx.forgeml_version, "forgeml.source": ir.provenance.ref,
            "forgeml.source_sha256": ir.provenance.sha256, "forgeml.precision": ir.precision})
        spec = getattr(ctx.converted, "seq2seq", None)
        if spec is not None:
            return self._seq2seq(model, spec, out_dir, too_big or external)
        path = out_dir / self.filename
        if not external:
            from onnx_ir.external_data import load_to_model

            load_to_model(model)  # weights still in the source's data files come inline (the clone's only)
            write_bytes_atomic(path, onnx_ir.serde.serialize_model(model).SerializeToString())
            return self._with_genai(Artifact(self.name, path, [path], runtime=_ort_version()), ctx)
        data = out_dir / (self.filename + ".data")
        tmp = out_dir / f".{self.filename}.tmp"
        # A tensor at a time from wherever it is (memory, or mapped from the source's data file) into
        # model.onnx.data, which onnx_ir replaces atomically; 64 KiB-aligned so runtimes can map it; the
        # .onnx that names it is renamed into place last.
        onnx_ir.save(model, tmp, external_data=data.name, size_threshold_bytes=cfg.size_threshold,
                     alignment=1 << 16)
        tmp.replace(path)
        return self._with_genai(Artifact(self.name, path, [path, data], runtime=_ort_version(),
                                         metadata={"external_data": data.name}), ctx)

    def _seq2seq(self, model, spec, out_dir: Path, external: bool) -> Artifact:
        """An encoder-decoder: ``encoder_model.onnx`` and ``decoder_with_past_model.onnx`` (``seq2seq.py``);
        the artifact's path is the decoder (the file of the loop), its files both."""
        import onnx_ir
        from onnx_ir.external_data import load_to_model

        from forgeml.targets.onnx.seq2seq import write_parts

        if external:
            raise TargetError("onnx: an encoder-decoder is written as two files without external data; this one is "
                              "past protobuf's 2 GB limit or asks for external_data")
        load_to_model(model)
        enc, dec = write_parts(onnx_ir.serde.serialize_model(model), spec, out_dir)
        return Artifact(self.name, dec, [dec, enc], runtime=_ort_version(),
                        metadata={"parts": {"encoder": enc.name, "decoder_with_past": dec.name}})

    def _with_genai(self, artifact: Artifact, ctx: TargetContext) -> Artifact:
        """A KV-cache decoder: onnxruntime-genai's config and the tokenizer beside the model."""
        decoder = getattr(ctx.converted, "decoder", None)
        if decoder is None:
            return artifact
        from forgeml.targets.onnx.genai import CONFIG_NAME, write_genai_files

        artifact.files += write_genai_files(decoder, artifact.path.parent, self.filename)
        artifact.metadata = {**(artifact.metadata or {}), "genai_config": CONFIG_NAME}
        return artifact

    def runner(self, artifact: Artifact, ctx: TargetContext):
        import forgeml.ir
        from forgeml.runtime.ort import ort_runner

        large = sum(f.stat().st_size for f in artifact.files) >= forgeml.ir.LARGE_MODEL_BYTES
        parts = (artifact.metadata or {}).get("parts")
        spec = getattr(ctx.converted, "seq2seq", None)
        if parts and spec is not None:  # signature.json holds the IR's union of both: no per-file check
            from forgeml.targets.onnx.seq2seq import Seq2SeqRunner

            folder = artifact.path.parent
            return Seq2SeqRunner(ort_runner(folder / parts["encoder"]), ort_runner(folder / parts["decoder_with_past"]),
                                 spec), None
        return checked(ort_runner(artifact.path, low_memory=large), artifact.path), None


def _ort_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


# --- reading a .onnx file on its own ------------------------------------------------------------------

def inspect_onnx(path: Path) -> dict:
    import onnx

    from forgeml.formats import onnx_file

    proto = onnx_file.load(path, external=False)  # checks external locations, reads none of them
    g = proto.graph
    inits = {t.name for t in g.initializer}

    def spec(v):
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "?"
        return {"name": v.name, "shape": dims, "dtype": dtype}

    params = sum(int(np.prod(t.dims)) for t in g.initializer)
    ops = Counter((n.domain + "::" if n.domain else "") + n.op_type for n in g.node)
    return {
        "format": "onnx",
        "path": str(path),
        "bytes": path.stat().st_size,
        "ir_version": proto.ir_version,
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "opsets": {(o.domain or "ai.onnx"): o.version for o in proto.opset_import},
        "inputs": [spec(v) for v in g.input if v.name not in inits],
        "outputs": [spec(v) for v in g.output],
        "nodes": len(g.node),
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "initializers": len(g.initializer),
        "parameters": params,
        "external_data": sorted({e.value for t in g.initializer for e in t.external_data if e.key == "location"}),
        "metadata": {p.key: p.value for p in proto.metadata_props},
    }


def file_signature(proto, path: Path):
    """The signature of a loaded file; onnx_ir's errors on a corrupt graph become one InputError line."""
    import onnx_ir

    from forgeml.errors import InputError
    from forgeml.ir import signature_of

    try:
        return signature_of(onnx_ir.serde.deserialize_model(proto))
    except Exception as e:  # onnx_ir raises many types on a malformed graph
        raise InputError(f"{path}: not a readable ONNX graph ({type(e).__name__}: {str(e)[:200]})") from e


def open_onnx(path: Path) -> Opened:
    """The file in onnxruntime; its signature and forgeml's precision stamp from the file itself."""
    import onnxruntime

    from forgeml.runtime.ort import ort_runner

    from forgeml.formats import onnx_file

    import forgeml.ir

    proto = onnx_file.load(path, external=False)  # onnxruntime reads the (checked) external data itself
    meta = {p.key: p.value for p in proto.metadata_props}
    sig = file_signature(proto, path)
    external = sum(r.length or 0 for r in onnx_file.external_refs(proto))
    run = ort_runner(path, low_memory=external >= forgeml.ir.LARGE_MODEL_BYTES)
    return Opened(checked(run, path), sig, f"onnxruntime {onnxruntime.__version__}", meta.get("forgeml.precision"))
