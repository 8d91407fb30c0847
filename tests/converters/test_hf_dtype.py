"""The reference without copies: a 16-bit checkpoint's reference stays 16-bit unless float32 is asked."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def fp16_checkpoint():
    from models_zoo.hf_models import BigSpec, big_checkpoint

    return big_checkpoint(BigSpec(hidden=64, layers=2, heads=4, kv_heads=2, ffn=128, vocab=512, seed=3))


def test_checkpoint_dtype_keeps_16_bit_weights_and_float32_logits(fp16_checkpoint):
    import torch

    from forgeml.converters.hf import HFConverter

    conv = HFConverter()
    half = conv.reference_only(fp16_checkpoint, None, "ckpt", dtype="checkpoint")
    assert {p.dtype for p in half.source_model.parameters()} == {torch.float16}  # no float32 copy
    full = conv.reference_only(fp16_checkpoint, None, "ckpt")
    assert {p.dtype for p in full.source_model.parameters()} == {torch.float32}
    a, b = half.reference(half.example_inputs)["logits"], full.reference(full.example_inputs)["logits"]
    assert a.dtype == np.float32 and a.shape == b.shape
    # 16-bit compute rounds, but it is the same model: close to the float32 run, not equal to it
    assert np.abs(a - b).max() <= 1e-2 * np.abs(b).max() and not np.array_equal(a, b)


def test_streamed_reference_is_the_float32_model_without_holding_it(fp16_checkpoint):
    """Weights read module by module from disk: the float32 model's logits exactly, and no parameter
    resident before or after a forward (each lives only while its module runs)."""
    from forgeml.converters.hf import HFConverter

    conv = HFConverter()
    streamed = conv.reference_only(fp16_checkpoint, None, "ckpt", dtype="streamed")
    params = list(streamed.source_model.parameters())
    assert params and all(p.is_meta for p in params)
    a = streamed.reference(streamed.example_inputs)["logits"]
    assert all(p.is_meta for p in streamed.source_model.parameters())
    full = conv.reference_only(fp16_checkpoint, None, "ckpt")
    np.testing.assert_array_equal(a, full.reference(full.example_inputs)["logits"])


def test_streamed_reference_reads_once_for_all_sets(fp16_checkpoint, monkeypatch):
    """Sets of one shape go through one forward (one pass over the weights on disk), same logits; a forward
    reads each tensor exactly once however the prefetch thread is scheduled, and nothing is read between
    calls (this was flaky while a prefetch of the first module ran on after a forward returned)."""
    import collections
    import time

    from forgeml.converters.hf import HFConverter
    from forgeml.parity.measure import run_reference
    from forgeml.targets.gguf.tensors import SafetensorsSource

    streamed = HFConverter().reference_only(fp16_checkpoint, None, "ckpt", dtype="streamed")
    ids = streamed.example_inputs["input_ids"]
    sets = [{"input_ids": ids}, {"input_ids": ids[::-1].copy()}, {"input_ids": ids[:, :8].copy()}]
    one_by_one = [streamed.reference(s)["logits"] for s in sets]
    time.sleep(0.2)  # a prefetch left running after the last call would be counted below
    reads = []

    def slow(real):
        def read(self, name, *rows):  # a slow disk: a read still running when the call returns shows up below
            time.sleep(0.02)
            reads.append(name)
            return real(self, name, *rows)
        return read

    # 16-bit tensors are read as stored (torch widens them), the others as float32: count both
    monkeypatch.setattr(SafetensorsSource, "get", slow(SafetensorsSource.get))
    monkeypatch.setattr(SafetensorsSource, "get_rows_stored", slow(SafetensorsSource.get_rows_stored))
    streamed.reference(sets[0])
    per_forward = collections.Counter(reads)
    time.sleep(0.2)
    assert collections.Counter(reads) == per_forward, "weights were read after the forward returned"
    reads.clear()
    together = run_reference(streamed.reference, sets, "ref")
    time.sleep(0.2)
    assert collections.Counter(reads) == collections.Counter({n: 2 * c for n, c in per_forward.items()})
    assert set(per_forward) == set(SafetensorsSource(sorted(fp16_checkpoint.glob("*.safetensors"))).names())
    for a, b in zip(together, one_by_one):
        np.testing.assert_allclose(a["logits"], b, rtol=1e-5, atol=1e-5)
