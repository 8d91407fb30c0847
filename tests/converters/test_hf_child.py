"""The checkpoint's reference computed in a child process (converters/hf_child.py): the same input sets and
logits as in-process, weights rounded as a GGUF stores them for the noise floor, errors as one line."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

from forgeml.converters.hf_child import start_reference  # noqa: E402
from forgeml.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def ckpt():
    from models_zoo.hf_models import SPECS, checkpoint

    return checkpoint(SPECS["tiny-llama"])


@pytest.mark.slow
def test_child_gives_the_in_process_sets_and_logits(ckpt):
    from forgeml.converters.hf import HFConverter
    from forgeml.parity.inputs import parity_inputs

    got = start_reference(ckpt, batches=1, seed=0, dynamic_batch=False).result()
    conv = HFConverter().reference_only(ckpt, None, str(ckpt), dtype="float32")
    sets = parity_inputs(conv.example_inputs, conv.ir.signature, batches=1, seed=0, dynamic_batch=False)
    assert len(got.input_sets) == 2 and all(np.array_equal(a["input_ids"], b["input_ids"])
                                            for a, b in zip(got.input_sets, sets))
    for s, out in zip(sets, got.outputs):
        np.testing.assert_allclose(out["logits"], conv.reference(s)["logits"], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_rounded_weights_are_the_files_values(ckpt):
    """With ``rounding`` every weight is what a q8_0 file stores: the same logits as the model with its
    weights round-tripped through gguf-py by hand."""
    import torch

    from forgeml.converters.hf import load_source

    src = load_source(ckpt)
    q8 = gguf.GGMLQuantizationType.Q8_0
    rounding = {}
    with torch.no_grad():
        plain = src.reference(src.example)["logits"]
        for name, p in src.model.named_parameters():
            if p.ndim == 2 and p.shape[1] % 32 == 0:
                a = p.detach().float().numpy()
                p.copy_(torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(a, q8), q8).reshape(a.shape)))
                rounding[name] = ("Q8_0", False)
        want = src.reference(src.example)["logits"]
    got = start_reference(ckpt, user_inputs=(src.example,), only=True, rounding=rounding).result()
    assert len(got.outputs) == 1
    np.testing.assert_allclose(got.outputs[0]["logits"], want, atol=1e-4, rtol=1e-4)
    assert np.abs(got.outputs[0]["logits"] - plain).max() > 1e-3  # the rounding did change them


@pytest.mark.slow
def test_a_child_error_comes_back_as_one_line(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError):
        start_reference(tmp_path, batches=0).result()
