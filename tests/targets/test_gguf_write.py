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
        write_checkpoint(llama_ckpt, out / "model.gguf", "q8_0", workers=2)
    assert list(out.iterdir()) == []  # nothing partial left behind


def test_unchecked_write_says_so(llama_ckpt, tmp_path):
    meta = write_checkpoint(llama_ckpt, tmp_path / "m.gguf", "q8_0", check_weights=False, workers=2)
    assert meta["weight_check"] == {"skipped": True}
