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
