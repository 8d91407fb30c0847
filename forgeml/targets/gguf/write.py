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
    sha256: str | None = None  # of the file, hashed from the bytes as they were written (None: not known)

    def to_json(self) -> dict:
        mb = self.source_bytes / 1e6
        return {"seconds": round(self.seconds, 4), "read_seconds": round(self.read_seconds, 4),
                "convert_seconds": round(self.convert_seconds, 4), "write_seconds": round(self.write_seconds, 4),
                "source_mb": round(mb, 3), "mb_per_s": round(mb / self.seconds, 2) if self.seconds else None,
                "by_type": {k: {**v, "seconds": round(v["seconds"], 4)} for k, v in self.by_type.items()},
                **({"sha256": self.sha256} if self.sha256 else {})}


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
               extra_metadata: dict[str, str] | None = None, progress=None, *, check: bool = True,
               workers: int | None = None) -> tuple[WriteStats, dict]:
    """Write ``path`` (the caller picks a temporary name and renames it when everything checks out);
    ``progress`` hears (tensors written, total) after each tensor. With ``check`` every slice is
    dequantized and compared with its source slice as it is written (``forgeml.targets.gguf.check``),
    and the finished file's tensor table is read back; returns the stats and that check's summary."""
    if gguf_type in KQUANT_TYPES:
        return _write_kquant(path, plan, vocab, source, gguf_type, extra_metadata, progress, check=check)
    if gguf_type not in DIRECT_TYPES:
        raise TargetError(f"gguf: unknown `gguf Config.type` {gguf_type!r}; choose from {', '.join(GGUF_TYPES)}")
    import gguf

    from forgeml.targets.gguf.check import WeightCheck, check_layout

    t_start = time.perf_counter()
    stats = WriteStats()
    checker = WeightCheck() if check else None
    writer = gguf.GGUFWriter(str(path), plan.arch)
    offsets: dict[str, int] = {}
    hasher, digest, hashed = None, None, -1
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
        data_start = fout.tell()
        fout.flush()
        hasher = _Hasher(path, data_start)  # the manifest's sha256, computed beside the writes
        pieces = [(i, rows, last) for i, t in enumerate(plan.tensors)
                  for rows, last in _with_last(_chunks(t))]
        tensor_bytes = 0
        t_tensor = time.perf_counter()
        for (i, _rows, last), piece in _in_order(pieces, lambda p: _convert(plan.tensors[p[0]], types[p[0]], p[1],
                                                                            source, check), workers):
            t = plan.tensors[i]
            if tensor_bytes == 0:
                offsets[t.name] = fout.tell() - data_start
            t3 = time.perf_counter()
            piece.data.tofile(fout)
            hasher.add(piece.data)
            stats.write_seconds += time.perf_counter() - t3
            stats.read_seconds += piece.read_s
            stats.convert_seconds += piece.convert_s
            tensor_bytes += int(piece.data.nbytes)
            if checker is not None:
                checker.add(piece)
            if not last:
                continue
            hasher.add(bytes(_pad(fout, tensor_bytes, align)))
            if checker is not None:
                checker.finish(t, types[i].name)
            stats.source_bytes += source.nbytes(t.source)
            entry = stats.by_type.setdefault(types[i].name, {"tensors": 0, "seconds": 0.0, "bytes": 0})
            entry["tensors"] += 1
            entry["seconds"] += time.perf_counter() - t_tensor
            entry["bytes"] += tensor_bytes
            tensor_bytes, t_tensor = 0, time.perf_counter()
            if progress is not None:
                progress(i + 1, len(plan.tensors))
        fout.flush()
    finally:
        writer.close()
        if hasher is not None:
            digest, hashed = hasher.finish()
    stats.seconds = time.perf_counter() - t_start
    stats.bytes_written = path.stat().st_size
    stats.sha256 = digest if hashed == stats.bytes_written else None
    if checker is None:
        return stats, {"skipped": True}
    check_layout(path, plan, types, offsets)
    return stats, checker.summary(len(plan.tensors))


@dataclass
class Piece:
    """One converted slice: the bytes to write and, when checked, its error sums against the source."""

    data: np.ndarray
    err_sq: float = 0.0
    src_sq: float = 0.0
    max_abs: float = 0.0
    read_s: float = 0.0
    convert_s: float = 0.0
    lossless: bool = False  # the source's own bits, copied: nothing rounded, nothing to compare


# Transforms that move values without changing them, and the stored dtype each GGML type holds bit for bit.
LAYOUT_ONLY = ("permute_qk", "transpose")
SAME_BITS = {"F16": "F16", "F32": "F32"}


def lossless(t, qtype, source: TensorSource) -> bool:
    """The file keeps the source's own values: same type, a transform that only moves them. Such a
    slice is copied as stored (no float32 round trip) and has nothing to compare: its error is zero
    by construction, and the check counts it as ``lossless``."""
    stored = getattr(source, "stored_dtype", None)
    if stored is None or len(t.shape) == 0 or SAME_BITS.get(stored(t.source)) != qtype.name:
        return False
    return t.transform is None or t.transform_name.startswith(LAYOUT_ONLY)


def _convert(t, qtype, rows, source: TensorSource, check: bool) -> Piece:
    """Read, transform, quantize (and dequantize-and-compare) one slice; runs on a worker thread
    (numpy and gguf-py's quantizers release the GIL in their array loops)."""
    import gguf

    t1 = time.perf_counter()
    keep = lossless(t, qtype, source)
    if keep:
        a = source.get_rows_stored(t.source, *(rows or (None, None)))
    else:
        a = source.get(t.source) if rows is None else source.get_rows(t.source, *rows)
    t2 = time.perf_counter()
    a = np.ascontiguousarray(t.apply(a), dtype=None if keep else np.float32)
    want = t.shape if rows is None else (rows[1] - rows[0], *t.shape[1:])
    if a.shape != want:
        raise TargetError(f"gguf: tensor {t.source} has shape {a.shape} after "
                          f"{t.transform_name or 'reading'}, expected {want}")
    if keep:
        return Piece(a, read_s=t2 - t1, convert_s=time.perf_counter() - t2, lossless=True)
    if qtype == gguf.GGMLQuantizationType.Q8_0:  # quantize and compare in one cache-sized pass
        from forgeml.targets.gguf.kernels import q8_0_checked

        data, err_sq, src_sq, max_abs = q8_0_checked(a)
        return Piece(data, err_sq, src_sq, max_abs, read_s=t2 - t1, convert_s=time.perf_counter() - t2)
    data = gguf.quants.quantize(a, qtype)
    piece = Piece(data, read_s=t2 - t1)
    if check:
        from forgeml.targets.gguf.check import compare

        compare(piece, gguf.quants.dequantize(data, qtype).reshape(a.shape), a)
    piece.convert_s = time.perf_counter() - t2
    return piece


def workers_default() -> int:
    """All the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _in_order(items: list, work, workers: int | None):
    """Yield ``(item, work(item))`` in the items' order while up to ``workers`` run ahead.

    A bounded window (``workers + 1`` slices in flight) keeps memory at a few slices whatever the
    model's size; results are consumed in order, so the file's bytes do not depend on ``workers``.
    """
    workers = workers or workers_default()
    if workers <= 1:
        for item in items:
            yield item, work(item)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    window = workers + 1
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gguf-quant") as pool:
        try:
            it = iter(items)
            for item in it:
                pending.append((item, pool.submit(work, item)))
                if len(pending) >= window:
                    break
            while pending:
                item, fut = pending.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(work, nxt)))
                yield item, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()


def _with_last(chunks: list):
    return [(c, k == len(chunks) - 1) for k, c in enumerate(chunks)]


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


def _pad(fout, n: int, align: int) -> bytes:
    pad = bytes(-n % align)
    if pad:
        fout.write(pad)
    return pad


class _Hasher:
    """sha256 of the file from the bytes as they are written: the header read back once, then each
    slice on a helper thread (hashlib releases the GIL), at most a few slices behind the writes."""

    def __init__(self, path: Path, header_bytes: int):
        import hashlib
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self.h = hashlib.sha256()
        with open(path, "rb") as f:
            self.h.update(f.read(header_bytes))
        self.n = header_bytes
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gguf-sha256")
        self.pending: deque = deque()

    def add(self, data) -> None:
        if len(data) == 0:
            return
        self.n += data.nbytes if hasattr(data, "nbytes") else len(data)
        self.pending.append(self.pool.submit(self.h.update, memoryview(data).cast("B")
                                             if hasattr(data, "nbytes") else data))
        while len(self.pending) > 4:
            self.pending.popleft().result()

    def finish(self) -> tuple[str, int]:
        while self.pending:
            self.pending.popleft().result()
        self.pool.shutdown()
        return self.h.hexdigest(), self.n


def _metadata(writer, plan: ArchPlan, vocab: Vocab, gguf_type: str, extra: dict[str, str]) -> None:
    writer.add_name(plan.name)
    writer.add_file_type(int(file_type(gguf_type)))
    if gguf_type not in ("f32", "f16", "bf16"):
        writer.add_quantization_version(2)
    add = {"u32": writer.add_uint32, "f32": writer.add_float32, "str": writer.add_string, "bool": writer.add_bool,
           "bool_array": lambda key, values: writer.add_array(key, [bool(v) for v in values])}
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
                  extra_metadata, progress=None, *, check: bool = True) -> tuple[WriteStats, dict]:
    """An f32 file first, then llama.cpp's quantizer (the reference K-quant implementation)."""
    from forgeml.errors import require

    llama_cpp = require("llama_cpp", "gguf")
    tmp = path.with_name(path.name + ".f32")
    try:
        stats, _ = write_gguf(tmp, plan, vocab, source, "f32", extra_metadata, progress, check=False)
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
    stats.sha256 = None  # the hash was the f32 file's
    if not check:
        return stats, {"skipped": True}
    from forgeml.targets.gguf.check import check_weights

    return stats, check_weights(path, plan, source, _chunks)  # llama.cpp picked the types: read them back
