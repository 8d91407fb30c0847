"""Write a GGUF file from a plan, a vocabulary and a tensor source, streaming one tensor at a time.

The header, metadata and tensor table are written first (every tensor's type and byte size follow
from its shape), then each tensor is read, transformed, converted to its GGUF type and appended —
in slices of rows of at most ``CHUNK_BYTES`` (float32) where the transform allows, so memory holds
one slice, not one tensor, let alone the model. Types: f32, f16, bf16, q8_0 and q4_0 are produced here
(gguf-py's reference quantizers); K-quants are produced by llama.cpp's own quantizer
(``llama_model_quantize``) from an f32 file written first. 1-D tensors (norms, biases) stay f32.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from forgeml.errors import TargetError
from forgeml.targets.gguf.arch import ArchPlan
from forgeml.targets.gguf.tensors import TensorSource
from forgeml.targets.gguf.vocab import Vocab

log = logging.getLogger(__name__)

DIRECT_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")
# llama.cpp quantizer names -> its file type id (llama_ftype); rows that are not multiples of 256 fall back.
KQUANT_TYPES = {"q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}
GGUF_TYPES = DIRECT_TYPES + tuple(KQUANT_TYPES)


@dataclass
class WriteStats:
    seconds: float = 0.0
    read_seconds: float = 0.0
    convert_seconds: float = 0.0
    write_seconds: float = 0.0
    source_bytes: int = 0
    bytes_written: int = 0
    by_type: dict[str, dict] = field(default_factory=dict)  # GGUF tensor type -> tensors, seconds, bytes

    def to_json(self) -> dict:
        mb = self.source_bytes / 1e6
        return {"seconds": round(self.seconds, 4), "read_seconds": round(self.read_seconds, 4),
                "convert_seconds": round(self.convert_seconds, 4), "write_seconds": round(self.write_seconds, 4),
                "source_mb": round(mb, 3), "mb_per_s": round(mb / self.seconds, 2) if self.seconds else None,
                "by_type": {k: {**v, "seconds": round(v["seconds"], 4)} for k, v in self.by_type.items()}}


def tensor_type(gguf_type: str, shape: tuple[int, ...]):
    """The GGML type a tensor of ``shape`` gets in a ``gguf_type`` file (1-D and odd rows stay wider)."""
    from gguf import GGML_QUANT_SIZES
    from gguf import GGMLQuantizationType as Q

    if len(shape) == 1 or gguf_type == "f32":
        return Q.F32
    want = {"f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0}[gguf_type]
    block = GGML_QUANT_SIZES[want][0]
    if shape[-1] % block:
        return Q.F16  # row length not a multiple of the block: llama.cpp's own fallback choice too
    return want


def file_type(gguf_type: str) -> int:
    from gguf import LlamaFileType as F

    return {"f32": F.ALL_F32, "f16": F.MOSTLY_F16, "bf16": F.MOSTLY_BF16, "q8_0": F.MOSTLY_Q8_0,
            "q4_0": F.MOSTLY_Q4_0}.get(gguf_type, KQUANT_TYPES.get(gguf_type))


def write_gguf(path: Path, plan: ArchPlan, vocab: Vocab, source: TensorSource, gguf_type: str,
               extra_metadata: dict[str, str] | None = None, progress=None) -> WriteStats:
    """Write ``path`` (the caller picks a temporary name and renames it when everything checks out);
    ``progress`` hears (tensors written, total) after each tensor."""
    if gguf_type in KQUANT_TYPES:
        return _write_kquant(path, plan, vocab, source, gguf_type, extra_metadata, progress)
    if gguf_type not in DIRECT_TYPES:
        raise TargetError(f"gguf: unknown `gguf Config.type` {gguf_type!r}; choose from {', '.join(GGUF_TYPES)}")
    import gguf

    t_start = time.perf_counter()
    stats = WriteStats()
    writer = gguf.GGUFWriter(str(path), plan.arch)
    try:
        _metadata(writer, plan, vocab, gguf_type, extra_metadata or {})
        types = []
        for t in plan.tensors:
            qtype = tensor_type(gguf_type, t.shape)
            types.append(qtype)
            if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
                dtype = np.dtype(np.float32 if qtype == gguf.GGMLQuantizationType.F32 else np.float16)
                writer.add_tensor_info(t.name, t.shape, dtype, int(np.prod(t.shape)) * dtype.itemsize)
            else:
                byte_shape = gguf.quant_shape_to_byte_shape(t.shape, qtype)
                writer.add_tensor_info(t.name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)),
                                       raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        fout = writer.fout[0]  # one file (no splits): tensor data follows, each at an aligned offset
        align = writer.data_alignment
        _pad(fout, fout.tell(), align)
        for i, (t, qtype) in enumerate(zip(plan.tensors, types)):
            if progress is not None and i:
                progress(i, len(plan.tensors))
            t0 = time.perf_counter()
            nbytes = 0
            for rows in _chunks(t):
                t1 = time.perf_counter()
                a = source.get(t.source) if rows is None else source.get_rows(t.source, *rows)
                t2 = time.perf_counter()
                a = np.ascontiguousarray(t.apply(a), dtype=np.float32)
                want = t.shape if rows is None else (rows[1] - rows[0], *t.shape[1:])
                if a.shape != want:
                    raise TargetError(f"gguf: tensor {t.source} has shape {a.shape} after "
                                      f"{t.transform_name or 'reading'}, expected {want}")
                data = gguf.quants.quantize(a, qtype)
                del a
                t3 = time.perf_counter()
                data.tofile(fout)
                nbytes += int(data.nbytes)
                del data
                stats.read_seconds += t2 - t1
                stats.convert_seconds += t3 - t2
                stats.write_seconds += time.perf_counter() - t3
            _pad(fout, nbytes, align)
            stats.source_bytes += source.nbytes(t.source)
            entry = stats.by_type.setdefault(qtype.name, {"tensors": 0, "seconds": 0.0, "bytes": 0})
            entry["tensors"] += 1
            entry["seconds"] += time.perf_counter() - t0
            entry["bytes"] += nbytes
        fout.flush()
        if progress is not None:
            progress(len(plan.tensors), len(plan.tensors))
    finally:
        writer.close()
    stats.seconds = time.perf_counter() - t_start
    stats.bytes_written = path.stat().st_size
    return stats


CHUNK_BYTES = 16 << 20  # float32 bytes per streamed slice of a tensor


def _chunks(t):
    """Row ranges to stream ``t`` in (``[None]``: the tensor is taken whole)."""
    if len(t.shape) < 2 or t.row_block == 0:
        return [None]
    rows, row_bytes = t.shape[0], int(np.prod(t.shape[1:])) * 4
    step = max(t.row_block, (CHUNK_BYTES // row_bytes) // t.row_block * t.row_block)
    if step >= rows:
        return [None]
    return [(a, min(a + step, rows)) for a in range(0, rows, step)]


def _pad(fout, n: int, align: int) -> None:
    pad = -n % align
    if pad:
        fout.write(bytes(pad))


def _metadata(writer, plan: ArchPlan, vocab: Vocab, gguf_type: str, extra: dict[str, str]) -> None:
    writer.add_name(plan.name)
    writer.add_file_type(int(file_type(gguf_type)))
    if gguf_type not in ("f32", "f16", "bf16"):
        writer.add_quantization_version(2)
    add = {"u32": writer.add_uint32, "f32": writer.add_float32, "str": writer.add_string, "bool": writer.add_bool}
    for key, (kind, value) in plan.metadata.items():
        add[kind](key, value)
    writer.add_tokenizer_model(vocab.model)
    if vocab.pre is not None:
        writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    if vocab.merges is not None:
        writer.add_token_merges(vocab.merges)
    for role, fn in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id),
                     ("unk", writer.add_unk_token_id), ("pad", writer.add_pad_token_id)):
        if role in vocab.special:
            fn(vocab.special[role])
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.add_space_prefix is not None:
        writer.add_add_space_prefix(vocab.add_space_prefix)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)
    for key, value in extra.items():
        writer.add_string(key, value)


def _write_kquant(path: Path, plan: ArchPlan, vocab: Vocab, source: TensorSource, gguf_type: str,
                  extra_metadata, progress=None) -> WriteStats:
    """An f32 file first, then llama.cpp's quantizer (the reference K-quant implementation)."""
    from forgeml.errors import require

    llama_cpp = require("llama_cpp", "gguf")
    tmp = path.with_name(path.name + ".f32")
    try:
        stats = write_gguf(tmp, plan, vocab, source, "f32", extra_metadata, progress)
        t0 = time.perf_counter()
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = KQUANT_TYPES[gguf_type]
        params.nthread = max(1, min(4, os.cpu_count() or 1))
        from forgeml.targets.gguf.runner import _quiet_stderr

        with _quiet_stderr():  # per-tensor fallback warnings (rows not multiples of 256) on fd 2
            rc = llama_cpp.llama_model_quantize(str(tmp).encode(), str(path).encode(), params)
        if rc != 0 or not path.is_file():
            raise TargetError(f"gguf: llama.cpp's quantizer failed ({gguf_type}, return code {rc})")
        quant_s = time.perf_counter() - t0
    finally:
        if tmp.exists():
            tmp.unlink()
    stats.seconds += quant_s
    stats.convert_seconds += quant_s
    stats.by_type = {"llama_model_quantize": {"tensors": len(plan.tensors), "seconds": quant_s,
                                              "bytes": path.stat().st_size}, **stats.by_type}
    stats.bytes_written = path.stat().st_size
    return stats
