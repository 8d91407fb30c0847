"""The GGUF writer's streaming pass: parallel conversion, in-pass weight check, deterministic bytes.

Runs on tiny zoo checkpoints with gguf-py alone (no llama.cpp, no torch model loaded): the file's
bytes must not depend on how many threads converted it or on the slice size, and a tensor whose
quantized bytes are off must fail the write, naming the tensor, before any file exists.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

pytest.importorskip("gguf", reason="the gguf target needs the gguf package (forgeml[gguf])")

from forgeml.errors import TargetError  # noqa: E402
from forgeml.targets.gguf import write as gguf_write  # noqa: E402
from forgeml.targets.gguf.target import write_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def llama_ckpt():
    from models_zoo.hf_models import SPECS, checkpoint

    return checkpoint(SPECS["tiny-llama"])


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("gguf_type", ["f32", "f16", "q8_0", "q4_0"])
def test_bytes_do_not_depend_on_workers_or_slices(llama_ckpt, tmp_path, monkeypatch, gguf_type):
    one = write_checkpoint(llama_ckpt, tmp_path / "one.gguf", gguf_type, workers=1)
    many = write_checkpoint(llama_ckpt, tmp_path / "many.gguf", gguf_type, workers=4)
    monkeypatch.setattr(gguf_write, "CHUNK_BYTES", 1024)  # many slices per tensor, in flight at once
    sliced = write_checkpoint(llama_ckpt, tmp_path / "sliced.gguf", gguf_type, workers=3)
    assert _digest(tmp_path / "one.gguf") == _digest(tmp_path / "many.gguf") == _digest(tmp_path / "sliced.gguf")
    assert one["weight_check"] == many["weight_check"]  # slices' sums added in file order, whatever finished first
    assert sliced["weight_check"]["worst"]["rel_rmse"] == pytest.approx(one["weight_check"]["worst"]["rel_rmse"])
    assert one["weight_check"]["passed"] and one["weight_check"]["tensors"] == one["tensors"]


def test_in_pass_check_names_a_wrong_tensor(llama_ckpt, tmp_path, monkeypatch):
    """A quantizer that breaks one tensor's bytes: the check compares what is written, not a recomputation."""
    import gguf

    real = gguf.quants.quantize

    def broken(a, qtype):
        out = real(a, qtype)
        if a.ndim == 2 and a.shape[0] == a.shape[1]:  # the square attention projections
            out = np.ascontiguousarray(out[::-1])  # rows swapped: right values, wrong places
        return out

    monkeypatch.setattr(gguf.quants, "quantize", broken)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TargetError, match=r"weight check: blk\.0\.attn_(q|output)\.weight .*relative RMS"):
        write_checkpoint(llama_ckpt, out / "model.gguf", "q4_0", workers=2)
    assert list(out.iterdir()) == []  # nothing partial left behind


def test_fused_q8_0_check_reads_the_packed_bytes(llama_ckpt, tmp_path, monkeypatch):
    """Q8_0 is quantized and checked in one pass; a packing that puts values in the wrong places fails it."""
    from forgeml.targets.gguf import kernels

    real = kernels.pack

    def scrambled(o, d16, qs):
        real(o, d16, np.ascontiguousarray(qs[:, ::-1]))  # right values, reversed inside each block

    monkeypatch.setattr(kernels, "pack", scrambled)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TargetError, match=r"weight check: \S+ .*Q8_0.*relative RMS"):
        write_checkpoint(llama_ckpt, out / "model.gguf", "q8_0", workers=2)
    assert list(out.iterdir()) == []


def test_fused_q8_0_bytes_are_gguf_pys():
    """Byte for byte what gguf-py's reference quantizer writes, ties (x.5 after scaling) and zero blocks included,
    and the error sums of its dequantized values."""
    import gguf

    from forgeml.targets.gguf.kernels import q8_0_checked

    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 4096), dtype=np.float32) * 0.02
    x[0, :32] = np.arange(32) - 15.5  # scale 16.5/127: exact ties after scaling
    x[1, :32] = np.linspace(-127, 127, 32)
    x[2] = 0.0
    x[3, :64] = np.float32(1e-30)
    ref = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)
    got, err_sq, src_sq, max_abs = q8_0_checked(x)
    assert got.dtype == ref.dtype and np.array_equal(got, ref)
    diff = gguf.quants.dequantize(ref, gguf.GGMLQuantizationType.Q8_0).reshape(x.shape).astype(np.float64) - x
    assert err_sq == pytest.approx(float((diff * diff).sum()), rel=1e-4)
    assert src_sq == pytest.approx(float(np.square(x, dtype=np.float64).sum()), rel=1e-4)
    assert max_abs == pytest.approx(float(np.abs(diff).max()))


def _half_copy(ckpt, dst):
    """The tiny checkpoint stored in float16 (config, tokenizer files beside it)."""
    import json
    import shutil

    from safetensors.numpy import load_file, save_file

    dst.mkdir()
    for f in ckpt.iterdir():
        if f.suffix != ".safetensors" and f.is_file():
            shutil.copy(f, dst / f.name)
    for f in ckpt.glob("*.safetensors"):
        save_file({k: v.astype(np.float16) for k, v in load_file(f).items()}, str(dst / f.name))
    cfg = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**cfg, "dtype": "float16"}))
    return dst


@pytest.mark.parametrize("gguf_type,stored", [("f16", "F16"), ("f32", "F32")])
def test_same_type_tensors_are_copied_bit_exact(llama_ckpt, tmp_path, monkeypatch, gguf_type, stored):
    """An f16 file from a float16 checkpoint (f32 from float32) holds the source's own bits, Q/K rows only
    moved: the same bytes as the float32 round trip wrote, and the check counts those tensors as lossless."""
    ckpt = _half_copy(llama_ckpt, tmp_path / "half") if stored == "F16" else llama_ckpt
    fast = write_checkpoint(ckpt, tmp_path / "fast.gguf", gguf_type, workers=2)
    monkeypatch.setattr(gguf_write, "lossless", lambda *a: False)  # every slice through float32 and back
    slow = write_checkpoint(ckpt, tmp_path / "slow.gguf", gguf_type, workers=2)
    assert _digest(tmp_path / "fast.gguf") == _digest(tmp_path / "slow.gguf")
    kept = fast["weight_check"]["by_type"][stored]
    assert kept["lossless"] > 0 and "lossless" not in slow["weight_check"]["by_type"][stored]
    if stored == "F16":  # norms widen to f32: compared as before
        assert kept["lossless"] == kept["tensors"] and fast["weight_check"]["by_type"]["F32"]["tensors"] > 0


def test_unchecked_write_says_so(llama_ckpt, tmp_path):
    meta = write_checkpoint(llama_ckpt, tmp_path / "m.gguf", "q8_0", check_weights=False, workers=2)
    assert meta["weight_check"] == {"skipped": True}


def test_tensor_table_reads_what_gguf_py_reads(llama_ckpt, tmp_path):
    """The header walk the layout check uses gives gguf-py's reader's names, types, shapes and offsets."""
    import gguf

    from forgeml.formats.gguf import tensor_table

    write_checkpoint(llama_ckpt, tmp_path / "m.gguf", "q8_0", workers=2)
    base, table = tensor_table(tmp_path / "m.gguf")
    reader = gguf.GGUFReader(str(tmp_path / "m.gguf"))
    assert base == reader.data_offset
    assert table == {t.name: (int(t.tensor_type), tuple(int(d) for d in reversed(t.shape)), int(t.data_offset))
                     for t in reader.tensors}


@pytest.mark.parametrize("gguf_type", ["f16", "q8_0"])
def test_sha256_hashed_while_writing_is_the_files(llama_ckpt, tmp_path, gguf_type):
    from forgeml.formats.hf_checkpoint import check_checkpoint
    from forgeml.targets.gguf.target import Config, HFSource, write_file

    src = HFSource(None, llama_ckpt, check_checkpoint(llama_ckpt), llama_ckpt, llama_ckpt.name)
    meta = write_file(src, tmp_path / "m.gguf", Config(type=gguf_type), workers=2)
    assert meta["write"]["sha256"] == _digest(tmp_path / "m.gguf")
