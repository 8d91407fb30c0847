"""Encoder-decoders (T5, BART, Whisper) export as encoder + decoder-with-past and decode like transformers.

Each conversion is one real dynamo export of a tiny seeded model (``seq2seq_models.py``) through the
pipeline; the two files it writes are then decoded again here with onnxruntime directly (not
forgeml's loop) and compared with transformers' ``generate``, so the pipeline's own generation row is
not the only witness. The checks that need no export (a broken decode loop is caught, a graph that
does not split is refused) are cheap.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the hf-seq2seq converter needs transformers (forgeml[gguf])")

import forgeml  # noqa: E402
from forgeml.options import ParityOptions  # noqa: E402
from tests.converters.seq2seq_models import MODELS  # noqa: E402

TOKENS = 16
ENCODER_OUT = {"t5": ["input_ids", "attention_mask"], "bart": ["input_ids", "attention_mask"],
               "whisper": ["input_features"]}
# One real export costs ~40 s of CPU (dynamo export, reference generate, two runtimes): T5 runs in the
# default suite; BART (learned positions) and Whisper (audio features, no encoder mask) are marked slow.
SLOW = {"bart", "whisper"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cache = {}

    def get(name: str):
        if name not in cache:
            model = MODELS[name]()
            out = tmp_path_factory.mktemp(name) / "out"
            run = forgeml.convert(model, targets=["onnx"], out_dir=out, passes=[],
                                  parity=ParityOptions(batches=1, generate_tokens=TOKENS))
            cache[name] = (model, run)
        return cache[name]

    return get


def _rows(manifest: dict, stage: str) -> dict[str, dict]:
    st = next(s for s in manifest["stages"] if s["name"] == stage)
    return {r["output"]: r for r in st["parity"]["rows"]}


def _ort_greedy(folder, prompt, n: int, layers: int, heads: int, head_dim: int, eos):
    """Greedy decoding straight through the two files with onnxruntime: encoder once, then the decoder."""
    import onnxruntime as ort

    enc = ort.InferenceSession(str(folder / "encoder_model.onnx"))
    dec = ort.InferenceSession(str(folder / "decoder_with_past_model.onnx"))
    enc_out = dict(zip([o.name for o in enc.get_outputs()], enc.run(None, prompt.encoder)))
    feeds = {"encoder_hidden_states": enc_out["last_hidden_state"]}
    if "attention_mask" in prompt.encoder:
        feeds["encoder_attention_mask"] = prompt.encoder["attention_mask"]
    for i in range(layers):
        for k in ("key", "value"):
            feeds[f"past_key_values.{i}.encoder.{k}"] = enc_out[f"present.{i}.encoder.{k}"]
            feeds[f"past_key_values.{i}.decoder.{k}"] = np.zeros((1, heads, 0, head_dim), np.float32)
    ids, tokens, logits = list(prompt.start), [], []
    names = [o.name for o in dec.get_outputs()]
    for _ in range(n):
        out = dict(zip(names, dec.run(None, {**feeds, "input_ids": np.asarray([ids], np.int64)})))
        last = out["logits"][0, -1]
        logits.append(last)
        tokens.append(int(last.argmax()))
        for i in range(layers):
            for k in ("key", "value"):
                feeds[f"past_key_values.{i}.decoder.{k}"] = out[f"present.{i}.decoder.{k}"]
        ids = [tokens[-1]]
        if tokens[-1] == eos:
            break
    return tokens, np.stack(logits)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in MODELS])
def test_seq2seq_exports_two_files_and_generates_like_transformers(runs, name):
    import onnx

    model, run = runs(name)
    assert run.ok, run.errors
    assert run.record.source.route == "dynamo (encoder + decoder with KV cache)"
    art = run.manifest["artifacts"]["onnx"]
    assert art["path"] == "decoder_with_past_model.onnx"
    assert [f["path"] for f in art["extra_files"]] == ["encoder_model.onnx"]
    folder = run.out_dir
    enc = onnx.load(str(folder / "encoder_model.onnx")).graph
    dec = onnx.load(str(folder / "decoder_with_past_model.onnx")).graph
    layers = model.config.decoder_layers if name != "t5" else model.config.num_decoder_layers
    assert [i.name for i in enc.input] == ENCODER_OUT[name]
    assert [o.name for o in enc.output] == ["last_hidden_state"] + [
        f"present.{i}.encoder.{k}" for i in range(layers) for k in ("key", "value")]
    dec_in = [i.name for i in dec.input]
    assert dec_in[0] == "input_ids" and "encoder_hidden_states" in dec_in
    assert ("encoder_attention_mask" in dec_in) == (name != "whisper")
    assert dec_in[-4 * layers:] == [f"past_key_values.{i}.{side}.{k}" for i in range(layers)
                                    for side in ("decoder", "encoder") for k in ("key", "value")]
    assert [o.name for o in dec.output] == ["logits"] + [
        f"present.{i}.decoder.{k}" for i in range(layers) for k in ("key", "value")]
    past = next(i for i in dec.input if i.name == "past_key_values.0.decoder.key")
    assert [d.dim_param or d.dim_value for d in past.type.tensor_type.shape.dim][::2] == [
        "batch_size", "past_decoder_sequence_length"]
    for stage in ("hf-seq2seq->onnx", "onnx"):  # the IR (both graphs in one) and the two written files
        gen = next(r for out, r in _rows(run.manifest, stage).items() if out.startswith("generation"))
        matched, total = map(int, gen["tokens_matched"].split("/"))
        assert gen["passed"] and matched == total >= 2 * TOKENS and not gen["generation"]["divergences"], gen

    # the files alone, decoded here with onnxruntime, give transformers' own greedy tokens
    from forgeml.converters import CONVERTERS
    from forgeml.converters.hf_seq2seq import load

    assert CONVERTERS["hf-seq2seq"].accepts(model) and not CONVERTERS["hf"].accepts(model)
    spec = load(model).spec
    for prompt in spec.prompts:
        ref_tokens, ref_logits = spec.generate(prompt, TOKENS)
        tokens, logits = _ort_greedy(folder, prompt, TOKENS, spec.layers, spec.heads, spec.head_dim,
                                     spec.eos_token_id)
        assert tokens == ref_tokens
        assert np.abs(logits - ref_logits).max() < 1e-3


def test_generation_check_catches_a_decoder_that_ignores_its_cache():
    """A decode loop fed a wrong cache (the cross-attention keys/values zeroed: the decoder no longer
    sees the input) must fail its row and name the first diverging step; the right one passes."""
    from forgeml.converters.hf_seq2seq import load
    from forgeml.parity.generation import GenerationCheck, seq2seq_decode
    from forgeml.parity.tolerances import profile_for
    from forgeml.runtime.torch import torch_runner

    src = load(MODELS["t5"]())
    spec = src.spec
    runner = torch_runner(src.wrapper, spec.input_names(), spec.output_names())

    def blind(inputs):
        inputs = dict(inputs)
        for i in range(spec.layers):
            for k in ("key", "value"):
                inputs[spec.past_name(i, k, "encoder")] = np.zeros_like(inputs[spec.past_name(i, k, "encoder")])
        return runner(inputs)

    check = GenerationCheck.start(spec, 8)
    tol = profile_for("fp32")
    good = check.row(seq2seq_decode(runner, spec), tol, "torch")
    assert good.passed and good.tokens_matched.split("/")[0] == good.tokens_matched.split("/")[1]
    bad = check.row(seq2seq_decode(blind, spec), tol, "torch")
    assert not bad.passed and "tokens differ first at prompt" in bad.problem


def test_a_graph_whose_decoder_reads_the_encoder_input_is_not_split():
    import onnx
    from onnx import TensorProto, helper

    from forgeml.errors import TargetError
    from forgeml.targets.onnx.seq2seq import extract

    x = helper.make_tensor_value_info("input_ids", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("decoder_input_ids", TensorProto.FLOAT, [1])
    h = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [1])
    z = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1])
    g = helper.make_graph([helper.make_node("Relu", ["input_ids"], ["last_hidden_state"]),
                           helper.make_node("Add", ["decoder_input_ids", "input_ids"], ["logits"])],
                          "union", [x, y], [h, z])
    proto = helper.make_model(g)
    enc = extract(proto, ["input_ids"], ["last_hidden_state"], "encoder")
    onnx.checker.check_model(enc)
    assert [n.op_type for n in enc.graph.node] == ["Relu"]
    with pytest.raises(TargetError, match=r"decoder with past would need \['input_ids'\]"):
        extract(proto, ["decoder_input_ids"], ["logits"], "decoder with past")


def test_a_checkpoint_directory_goes_to_the_seq2seq_converter(tmp_path):
    """config.json's `is_encoder_decoder` routes a directory (read as JSON, nothing imported); others stay `hf`."""
    import json

    from forgeml.pipeline.sources import resolve

    (tmp_path / "s2s").mkdir()
    (tmp_path / "s2s" / "config.json").write_text(json.dumps({"model_type": "t5", "is_encoder_decoder": True}))
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert resolve(str(tmp_path / "s2s")).converter.name == "hf-seq2seq"
    assert resolve(str(tmp_path / "lm")).converter.name == "hf"


@pytest.mark.slow
def test_a_saved_t5_checkpoint_converts_from_the_cli_and_generates_like_transformers(tmp_path):
    """What a user brings: `save_pretrained`'s directory, converted by the CLI; generation judged in both files."""
    import json

    from forgeml.cli.app import main

    MODELS["t5"]().save_pretrained(tmp_path / "t5", safe_serialization=True)
    out = tmp_path / "out"
    code = main(["convert", str(tmp_path / "t5"), "--to", "onnx", "-o", str(out), "--passes", "",
                 "--parity-batches", "1", "--gen-tokens", "8"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    gen = next(r for o, r in _rows(manifest, "onnx").items() if o.startswith("generation"))
    matched, total = map(int, gen["tokens_matched"].split("/"))
    assert gen["passed"] and matched == total >= 8


def test_a_broken_seq2seq_checkpoint_is_one_line(tmp_path, capsys):
    import json

    from forgeml.cli.app import main

    ckpt = tmp_path / "s2s"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "t5", "is_encoder_decoder": True, "d_model": 8}))
    code = main(["convert", str(ckpt), "--to", "onnx", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert str(ckpt) in err and len(err.strip().splitlines()) == 1, err
