"""gguf: llama.cpp-ready files for decoder LLMs (llama, mistral, qwen2, qwen3, phi3, gemma2, gpt2), proven in llama.cpp.

The file is written from the *source* checkpoint, not from the ONNX IR: GGUF stores the model's own
tensors under llama.cpp's names, and llama.cpp brings its own compute graph. Tensors stream from the
safetensors files one at a time (see ``gguf_tensors``), so memory stays near the largest tensor.

Parity: llama.cpp loads the file and computes next-token logits for the parity token ids, compared
with the transformers model under a profile for the weight type (``gguf-f32`` strict; ``gguf-f16``;
``gguf-q8_0`` and ``gguf-q4`` judged on cosine and top-1). Before that, every tensor is dequantized
and compared with its source tensor (``forgeml.targets.gguf.check``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from forgeml.errors import InputError, TargetError, require
from forgeml.targets.base import Artifact, OpenContext, Opened, TargetContext, checked
from forgeml.targets.gguf.write import GGUF_TYPES, KQUANT_TYPES

log = logging.getLogger(__name__)

# `gguf Config.type` -> tolerance profile (forgeml.parity.tolerances.PROFILES).
PRECISION = {"f32": "gguf-f32", "f16": "gguf-f16", "bf16": "gguf-bf16", "q8_0": "gguf-q8_0", "q6_k": "gguf-q8_0",
             "q5_k_m": "gguf-q4", "q4_k_m": "gguf-q4", "q4_0": "gguf-q4"}
# `quantize.mode` (the run's mode) -> the GGUF type this target follows when it has no config of its own.
FROM_QUANTIZE = {"fp16": "f16", "int8": "q8_0", "int8-static": "q8_0", "int4": "q4_0"}


@dataclass(frozen=True)
class Config:
    """``type``: f32 | f16 | bf16 | q8_0 | q4_0 | q4_k_m | q5_k_m | q6_k. ``check_weights``: dequantize every
    tensor and compare it with the source before the file is accepted."""

    type: str = "f16"
    check_weights: bool = True

    def __post_init__(self):
        if self.type not in GGUF_TYPES:
            raise InputError(f"`gguf Config.type` {self.type!r}: choose from {', '.join(GGUF_TYPES)}")


@dataclass
class HFSource:
    model: object | None  # the transformers model (in-memory or loaded from the checkpoint)
    checkpoint: Path | None
    config: dict
    tokenizer_dir: Path | None
    name: str


def hf_source(ctx: TargetContext, kind: str) -> HFSource:
    """What the target writes from: the hf converter's checkpoint dir or in-memory transformers model."""
    conv = ctx.converted
    model = getattr(conv, "source_model", None)
    checkpoint = getattr(conv, "checkpoint", None)
    if conv is None or (checkpoint is None and not hasattr(getattr(model, "config", None), "to_dict")):
        raise TargetError(f"gguf: needs a Hugging Face decoder checkpoint (a directory with config.json, tokenizer "
                          f"files and safetensors) or an in-memory transformers causal LM; got a {kind} source")
    from forgeml.formats.hf_checkpoint import local_tokenizer_dir, read_config

    if checkpoint is not None:
        cfg = read_config(checkpoint)
        return HFSource(model, checkpoint, cfg, checkpoint, checkpoint.name)
    cfg = model.config.to_dict()
    name = Path(str(cfg.get("_name_or_path") or "")).name or type(model).__name__
    return HFSource(model, None, cfg, local_tokenizer_dir(model), name)


class GgufTarget:
    suffixes = (".gguf",)

    def inspect(self, path: Path) -> dict:
        from forgeml.formats.gguf import inspect_gguf

        return inspect_gguf(path)

    def open(self, path: Path, ctx: OpenContext) -> Opened:
        """llama.cpp: token ids in, logits of every position out (context sized to the inputs); the
        precision is this target's profile for the weight type in the file's header."""
        from forgeml.formats.gguf import inspect_gguf
        from forgeml.targets.gguf.runner import llama_cpp_version, llama_runner

        file_type = inspect_gguf(path)["file_type"] or ""
        precision = PRECISION.get(file_type.removeprefix("MOSTLY_").removeprefix("ALL_").lower())
        cache: dict = {}

        def run(inputs):
            name = next(iter(inputs))
            n_ctx = max(int(inputs[name].shape[-1]), 8)
            if n_ctx not in cache:
                cache[n_ctx] = llama_runner(path, n_ctx=n_ctx, input_name=name)
            return cache[n_ctx](inputs)

        return Opened(checked(run, path), None, llama_cpp_version(), precision)

    name = "gguf"
    Config = Config
    reads_ir = False  # written from the checkpoint's tensors; the pipeline skips the export for it
    # With a checkpoint dir the file streams from its safetensors: the pipeline may drop the loaded
    # reference model once its outputs are computed, before llama.cpp maps the file.
    needs_source_model = False
    filename = "model.gguf"

    def _config(self, ctx: TargetContext) -> Config:
        if isinstance(ctx.config, Config):
            return ctx.config
        if ctx.config is not None:
            raise TargetError(f"gguf: expected a forgeml.targets.gguf.target.Config, got {type(ctx.config).__name__}")
        return Config(type=FROM_QUANTIZE.get(ctx.quantize or "", "f16"))

    def needs_float32_reference(self, config, quantize: str | None) -> bool:
        """An f32 file is judged elementwise: a 16-bit reference's own rounding would fail it."""
        cfg = config if isinstance(config, Config) else Config(type=FROM_QUANTIZE.get(quantize or "", "f16"))
        return cfg.type == "f32"

    def build(self, ir, out_dir: Path, ctx: TargetContext) -> Artifact:
        cfg = self._config(ctx)
        try:  # both before any work: the file is only worth writing if llama.cpp can prove it
            require("gguf", "gguf")
            if ctx.outputs_compared or cfg.type in KQUANT_TYPES:  # (K-quants: llama.cpp's quantizer makes them)
                require("llama_cpp", "gguf")
        except InputError as e:
            raise TargetError(f"gguf: {e}") from e
        src = hf_source(ctx, ir.provenance.kind)
        extra = {"forgeml.version": ctx.forgeml_version, "forgeml.source": ir.provenance.ref,
                 "forgeml.source_sha256": ir.provenance.sha256}
        path = out_dir / self.filename
        meta = write_file(src, path, cfg, extra, progress=ctx.progress)
        return Artifact(self.name, path, [path], runtime=_runtime(), metadata=meta,
                        sha256=meta["write"].pop("sha256", None))

    def rounding(self, artifact: Artifact, ctx: TargetContext) -> dict[str, tuple[str, bool]] | None:
        """{source tensor: (GGML type, stored transposed)} of the written file, for the noise-floor
        reference (``forgeml.parity.floor``); None for K-quants, whose types llama.cpp's quantizer picks."""
        from forgeml.formats.hf_checkpoint import safetensors_files
        from forgeml.targets.gguf import arch as gguf_arch
        from forgeml.targets.gguf.tensors import SafetensorsSource
        from forgeml.targets.gguf.write import tensor_type

        cfg = self._config(ctx)
        src = hf_source(ctx, "hf")
        if cfg.type in KQUANT_TYPES or src.checkpoint is None:
            return None
        tensors = SafetensorsSource(safetensors_files(src.checkpoint))
        plan = gguf_arch.plan(src.config, tensors.names(), tensors.shape, src.name)
        return {t.source: (tensor_type(cfg.type, t.shape).name, t.transform_name == "transpose")
                for t in plan.tensors}

    def runner(self, artifact: Artifact, ctx: TargetContext):
        from forgeml.targets.gguf.runner import llama_runner

        cfg = self._config(ctx)
        longest = max((s["input_ids"].shape[-1] for s in ctx.input_sets if "input_ids" in s), default=64)
        n_ctx = max(32, int(longest)) + 128  # room for the generation check's greedy tokens after a prompt
        return checked(llama_runner(artifact.path, n_ctx=n_ctx), artifact.path), PRECISION[cfg.type]


def write_file(src: HFSource, path: Path, cfg: Config, extra: dict[str, str] | None = None,
               progress=None, workers: int | None = None) -> dict:
    """Write ``path`` atomically from ``src`` (weight check included); returns what the manifest records.
    ``workers``: threads converting slices in parallel (default: every core this process may use).

    Nothing here loads the model: with a checkpoint directory, tensors stream from its safetensors
    files, so this also converts checkpoints larger than memory (see ``write_checkpoint``).
    """
    from forgeml.formats.hf_checkpoint import safetensors_files
    from forgeml.targets.gguf import arch as gguf_arch
    from forgeml.targets.gguf.tensors import SafetensorsSource, StateDictSource
    from forgeml.targets.gguf.vocab import read_vocab
    from forgeml.targets.gguf.write import write_gguf

    if src.config.get("model_type") not in gguf_arch.SUPPORTED:
        raise gguf_arch.unsupported(str(src.config.get("model_type")))
    try:
        tensors = SafetensorsSource(safetensors_files(src.checkpoint)) if src.checkpoint else StateDictSource(src.model)
    except InputError as e:
        raise TargetError(f"gguf: {e}") from e
    plan = gguf_arch.plan(src.config, tensors.names(), tensors.shape, src.name)
    vocab = read_vocab(src.tokenizer_dir, src.config, plan.vocab_size)
    gguf_arch.name_for_vocab(plan, vocab.tokens)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        stats, weights = write_gguf(tmp, plan, vocab, tensors, cfg.type, extra or {}, progress=progress,
                                    check=cfg.check_weights, workers=workers)
        os.replace(tmp, path)
    except (OSError, ValueError) as e:
        raise TargetError(f"gguf: writing {path.name} failed: {e}") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    meta = {"gguf_type": cfg.type, "architecture": plan.arch, "source_architecture": plan.hf_type,
            "tensors": len(plan.tensors), "tokenizer": vocab.summary(), "write": stats.to_json(),
            "weight_check": weights, "profile": PRECISION[cfg.type]}
    if plan.notes:
        meta["notes"] = plan.notes
    for note in plan.notes:
        log.warning("gguf: %s", note)
    return meta


def write_checkpoint(checkpoint: str | Path, out: str | Path, gguf_type: str = "f16", *,
                     check_weights: bool = True, workers: int | None = None, progress=None) -> dict:
    """Checkpoint dir -> GGUF file without loading the model (no logit parity: the pipeline does that).

    For checkpoints too large to load next to the reference model; memory stays near one slice of
    one tensor. The file still gets the weight-level check against the source tensors.
    """
    from forgeml.formats.hf_checkpoint import check_checkpoint

    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise InputError(f"{ckpt}: not a checkpoint directory")
    cfg = check_checkpoint(ckpt)
    src = HFSource(None, ckpt, cfg, ckpt, ckpt.name)
    return write_file(src, Path(out), Config(type=gguf_type, check_weights=check_weights), progress=progress,
                      workers=workers)


def _runtime() -> str:
    """The runtime that loads the file, named from the installed distribution (not imported: a run that
    compares no outputs never loads it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"llama.cpp (llama-cpp-python {version('llama_cpp_python')})"
    except PackageNotFoundError:
        return "llama.cpp (llama-cpp-python not installed)"
