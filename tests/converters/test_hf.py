"""The hf converter: checkpoint directories are detected, checked before loading, and refused clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the hf converter needs transformers (forgeml[gguf])")

from forgeml.cli.app import main  # noqa: E402
from forgeml.errors import InputError  # noqa: E402
from forgeml.pipeline.sources import resolve  # noqa: E402


@pytest.fixture(scope="module")
def llama_dir():
    from models_zoo.hf_models import SPECS, checkpoint

    return checkpoint(SPECS["tiny-llama"])


def _copy(src: Path, dst: Path, skip=()) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        if f.name not in skip:
            shutil.copy(f, dst / f.name)
    return dst


def test_checkpoint_dir_resolves_to_hf(llama_dir):
    r = resolve(str(llama_dir))
    assert r.converter.name == "hf"
    assert r.model == Path(llama_dir)


def test_in_memory_causal_lm_goes_to_hf_not_torch(llama_dir):
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(llama_dir))
    assert resolve(model).converter.name == "hf"
    bert = transformers.BertModel(transformers.BertConfig(hidden_size=32, num_hidden_layers=1,
                                                         num_attention_heads=2, intermediate_size=32))
    assert resolve(bert).converter.name == "torch"


def test_load_source_reference_is_transformers(llama_dir):
    from forgeml.converters.hf import load_source

    src = load_source(Path(llama_dir))
    ids = src.example["input_ids"]
    assert ids.shape == (2, 32) and ids.dtype == np.int64
    logits = src.reference(src.example)["logits"]
    assert logits.shape == (2, 32, src.model.config.vocab_size)
    # Trained zoo models have peaked logits: the top-1 lead is far above float noise almost everywhere.
    top2 = np.sort(logits, axis=-1)[..., -2:]
    assert np.median(top2[..., 1] - top2[..., 0]) > 0.05


def test_missing_tokenizer_is_refused(llama_dir, tmp_path):
    from forgeml.converters.hf import check_checkpoint

    bad = _copy(llama_dir, tmp_path / "ckpt", skip=("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))
    with pytest.raises(InputError, match="no tokenizer files"):
        check_checkpoint(bad)


def test_corrupt_safetensors_header_exits_2_and_writes_nothing(llama_dir, tmp_path, capsys):
    bad = _copy(llama_dir, tmp_path / "ckpt")
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[:8] + b"{not json" + data[17:])
    out = tmp_path / "out"
    assert main(["convert", str(bad), "--to", "gguf", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "corrupt safetensors header" in err and "Traceback" not in err
    assert not out.exists()


def test_truncated_safetensors_is_refused(llama_dir, tmp_path):
    from forgeml.converters.hf import check_checkpoint

    bad = _copy(llama_dir, tmp_path / "ckpt")
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        check_checkpoint(bad)


def test_pickle_only_checkpoint_is_refused(llama_dir, tmp_path):
    from forgeml.converters.hf import check_checkpoint

    bad = _copy(llama_dir, tmp_path / "ckpt", skip=("model.safetensors",))
    (bad / "pytorch_model.bin").write_bytes(b"\x80\x02")
    with pytest.raises(InputError, match="pickle"):
        check_checkpoint(bad)


def test_missing_tensor_is_refused(llama_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    from forgeml.converters.hf import load_source

    bad = _copy(llama_dir, tmp_path / "ckpt")
    tensors = load_file(str(bad / "model.safetensors"))
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, str(bad / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(InputError, match="missing tensors.*up_proj"):
        load_source(bad)


def test_config_without_model_type_is_refused(llama_dir, tmp_path):
    bad = _copy(llama_dir, tmp_path / "ckpt")
    cfg = json.loads((bad / "config.json").read_text())
    del cfg["model_type"]
    (bad / "config.json").write_text(json.dumps(cfg))
    from forgeml.converters.hf import check_checkpoint

    with pytest.raises(InputError, match="model_type"):
        check_checkpoint(bad)


def test_tokenizer_with_no_id_in_vocab_is_refused_not_looped(llama_dir):
    """A tokenizer whose ids all fall outside the model's vocab (mismatched pair) once looped forever."""
    from types import SimpleNamespace

    from forgeml.converters.hf import _example

    model = SimpleNamespace(config=SimpleNamespace(vocab_size=0))
    with pytest.raises(InputError, match="no token id below the model's vocab_size"):
        _example(None, Path(llama_dir), model)
    ids = _example(None, Path(llama_dir), SimpleNamespace(config=SimpleNamespace(vocab_size=300)))["input_ids"]
    assert ids.shape == (2, 32) and ids.max() < 300
