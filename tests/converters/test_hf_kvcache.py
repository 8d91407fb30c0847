"""HF causal LMs export with their KV cache, and decode greedily like transformers, in onnxruntime and
through onnxruntime-genai's own Generator (the files the onnx target writes beside the model).

Each architecture is one real conversion (dynamo export, reference generation, parity): ~1-2 min on
a loaded 2-core machine, so these are slow tests.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the hf converter needs transformers (forgeml[gguf])")

import forgeml  # noqa: E402
from forgeml.options import ParityOptions  # noqa: E402

# (zoo name, kv heads != heads (GQA), tied embeddings)
ARCHS = {"tiny-llama": (True, False), "tiny-qwen2": (True, False), "tiny-gpt2": (False, True),
         "tiny-phi3": (True, False)}
EXTRA = ("tiny-qwen3", "tiny-gemma2")


def _rows(manifest: dict, stage: str) -> dict[str, dict]:
    st = next(s for s in manifest["stages"] if s["name"] == stage)
    return {r["output"]: r for r in st["parity"]["rows"]}


def _generation(rows: dict[str, dict], runtime: str | None = None) -> dict:
    hits = [r for name, r in rows.items() if name.startswith("generation")
            and (runtime is None) == ("onnxruntime-genai" not in name)]
    assert len(hits) == 1, sorted(rows)
    return hits[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cache = {}

    def get(name: str):
        if name not in cache:
            out = tmp_path_factory.mktemp(name) / "out"
            cache[name] = forgeml.convert(f"zoo:{name}", targets=["onnx"], out_dir=out, passes=[],
                                          parity=ParityOptions(batches=1))
        return cache[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", [*ARCHS, *EXTRA])
def test_decoder_exports_with_kv_cache_and_generates_like_transformers(runs, name):
    import transformers

    from models_zoo.hf_models import SPECS, checkpoint

    run = runs(name)
    cfg = transformers.AutoConfig.from_pretrained(str(checkpoint(SPECS[name])))
    assert run.manifest["source"]["route"] == "dynamo (decoder with KV cache)"
    sig = {t["name"]: t for t in run.manifest["signature"]["inputs"] + run.manifest["signature"]["outputs"]}
    layers = cfg.num_hidden_layers
    kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    for i in range(layers):
        for kind in ("key", "value"):
            past, present = sig[f"past_key_values.{i}.{kind}"], sig[f"present.{i}.{kind}"]
            assert past["shape"][1] == present["shape"][1] == kv_heads  # GQA kept as kv heads
            assert past["shape"][2] == "past_sequence_length"
    if name in ARCHS:
        gqa, tied = ARCHS[name]
        assert (kv_heads != cfg.num_attention_heads) == gqa
        assert bool(cfg.tie_word_embeddings) == tied
    for stage in ("hf->onnx", "onnx"):
        gen = _generation(_rows(run.manifest, stage))
        assert gen["passed"], gen
        assert gen["tokens_matched"] == "128/128" and not gen["generation"]["divergences"]
    genai = _generation(_rows(run.manifest, "onnx"), "onnxruntime-genai")
    assert genai["passed"] and genai["tokens_matched"] == "128/128", genai
    assert run.ok


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-qwen2"])
def test_genai_tokenizer_beside_the_model_encodes_like_the_source(runs, name):
    og = pytest.importorskip("onnxruntime_genai")
    from transformers import AutoTokenizer

    from models_zoo.hf_models import SPECS, checkpoint

    out = runs(name).out_dir
    cfg = json.loads((out / "genai_config.json").read_text())
    assert cfg["model"]["decoder"]["inputs"]["past_key_names"] == "past_key_values.%d.key"
    tok = og.Tokenizer(og.Model(str(out)))
    hf = AutoTokenizer.from_pretrained(str(checkpoint(SPECS[name])))
    for text in ("def convert(model, inputs):", "The quick brown fox.\n    return x + 1"):
        # genai 0.18's encode adds no BOS (transformers' llama tokenizer does): the ids of the text itself agree
        assert [int(i) for i in tok.encode(text)] == hf(text, add_special_tokens=False)["input_ids"], text


@pytest.mark.slow
def test_int4_variant_reports_token_agreement_and_first_divergence(tmp_path):
    from forgeml.parity.generation import prompts_from
    from models_zoo.hf_models import SPECS, checkpoint, example_ids

    prompts = prompts_from(example_ids(checkpoint(SPECS["tiny-llama"])))
    run = forgeml.convert("zoo:tiny-llama", targets=["onnx"], out_dir=tmp_path / "out", passes=[],
                          quantize="int4", parity=ParityOptions(batches=1))
    import onnx

    ops = {n.op_type for n in onnx.load(str(run.out_dir / "model.onnx")).graph.node}
    assert "MatMulNBits" in ops
    for runtime in (None, "onnxruntime-genai"):
        gen = _generation(_rows(run.manifest, "onnx"), runtime)
        matched, total = map(int, gen["tokens_matched"].split("/"))
        assert total == 128 and 0 < matched <= total and gen["exact_match"] == pytest.approx(matched / total)
        for d in gen["generation"]["divergences"]:  # where each prompt first took another token
            assert d["position"] == len(prompts[d["prompt"]]) + d["step"]
            assert d["reference"] != d["candidate"] and np.isfinite(d["reference_top1_lead"])


@pytest.mark.slow
def test_no_kv_cache_exports_the_logits_forward(tmp_path):
    from forgeml.cli.app import main

    out = tmp_path / "out"
    assert main(["convert", "zoo:tiny-gpt2", "--to", "onnx", "--passes", "", "--parity-batches", "0",
                 "--no-kv-cache", "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [t["name"] for t in manifest["signature"]["inputs"]] == ["input_ids"]
    assert not (out / "genai_config.json").exists()
    assert "kv_cache" in manifest["source"]["route"] and "fallback" not in manifest["source"]


@pytest.mark.slow
def test_parity_command_compares_a_decoder_file_with_its_source_on_generation_too(runs):
    from forgeml.pipeline.compare import compare

    manifest = compare("zoo:tiny-llama", str(runs("tiny-llama").out_dir / "model.onnx"), batches=1).to_json()
    rows = {r["output"]: r for r in manifest["stages"][0]["parity"]["rows"]}
    assert "present.1.value" in rows and manifest["ok"]
    assert _generation(rows)["tokens_matched"] == "128/128"
