"""Hugging Face encoder-decoders (T5, BART, Whisper, …) → one ONNX IR holding encoder and decoder-with-past.

A seq2seq model is deployed as a loop: the encoder once per input, then the decoder one token at a
time with its self-attention cache growing and the cross-attention keys/values fixed. The IR holds
both graphs side by side in one model (disjoint inputs and outputs, ``ir.Seq2SeqSpec`` names them),
so every pass (fp16, int8, simplify) and every tensor-parity check treats both at once; the onnx
target splits them into ``encoder_model.onnx`` and ``decoder_with_past_model.onnx``.

Route: one wrapper module whose ``forward`` runs (a) the encoder and the decoder's cross-attention
projections over its output, and (b) one decoder step from flat tensors: it builds the
``EncoderDecoderCache`` (self-attention ``DynamicCache`` from the past, cross-attention from the
given keys/values, marked as already computed) *inside* forward, so torch.export sees only tensors.
The cross keys/values come from the encoder side (Optimum takes them from a third, no-past decoder
file; onnxruntime-genai's Whisper takes them from the encoder, as here), so two files suffice.
The reference is the same wrapper in torch eager; ``generate`` is transformers' own greedy decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forgeml.converters.base import ImportOptions
from forgeml.errors import ConversionError, InputError, first_line, require
from forgeml.ir import ConvertResult, IRModel, Provenance, Seq2SeqPrompt, Seq2SeqSpec, sha256_arrays, signature_of
from forgeml.parity.inputs import check_inputs
from forgeml.runtime import InputSet
from forgeml.runtime.quiet import quiet
from forgeml.runtime.torch import torch_runner

_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "torch._export", "onnxscript", "torch.fx",
            "transformers")
PROMPTS = 4  # generation-check inputs
_PAST = 5  # decoder tokens already in the example's self-attention cache
_NEW = 4  # decoder tokens the example feeds on top of them
# Every dynamic size of the example differs (encoder batch 2, decoder batch 3, 4, 5, 10/16, 12): the exporter unifies equal sizes
# (duck sizing), and a decoder that read its batch from the encoder's input would not split from it.


def _torch():
    return require("torch", "torch")


def _transformers():
    return require("transformers", "gguf")


def is_seq2seq(obj: object) -> bool:
    """An in-memory transformers encoder-decoder with an LM head (``*ForConditionalGeneration``)."""
    mods = [c.__module__ for c in type(obj).__mro__]
    cfg = getattr(obj, "config", None)
    return (any(m.startswith("transformers.") for m in mods) and bool(getattr(cfg, "is_encoder_decoder", False))
            and type(obj).__name__.endswith("ForConditionalGeneration"))


class Seq2SeqStep:
    """Factory for the wrapper: ``forward(*encoder_inputs, decoder_input_ids, [encoder_attention_mask],
    encoder_hidden_states, *past)`` → ``(last_hidden_state, *cross_present, logits, *self_present)``;
    ``past`` per layer: decoder key, decoder value, encoder key, encoder value (Optimum's order)."""

    @staticmethod
    def wrap(model, spec: Seq2SeqSpec):
        torch = _torch()
        tf = _transformers()
        DynamicCache, EncoderDecoderCache = tf.DynamicCache, tf.EncoderDecoderCache
        n_enc, layers, masked, audio = len(spec.encoder_inputs), spec.layers, spec.masked, not spec.masked

        class _Step(torch.nn.Module):
            def __init__(self, lm):
                super().__init__()
                self.lm = lm

            def _encode(self, enc):
                if audio:
                    last = self.lm.get_encoder()(input_features=enc[0]).last_hidden_state
                    mask = None
                else:
                    last = self.lm.get_encoder()(input_ids=enc[0], attention_mask=enc[1]).last_hidden_state
                    mask = enc[1]
                # the decoder's cross-attention projections of the encoder output: one throwaway step
                # with an empty cache fills the cross cache (the rest of that step is dead code)
                cache = EncoderDecoderCache(DynamicCache(), DynamicCache())  # layers as used (T5: config counts encoder layers)
                start = torch.zeros_like(last[:, :1, 0], dtype=torch.long)
                self.lm(encoder_outputs=(last,), attention_mask=mask, decoder_input_ids=start,
                        past_key_values=cache, use_cache=True)
                cross = []
                for layer in cache.cross_attention_cache.layers[:layers]:
                    cross += [layer.keys, layer.values]
                return [last, *cross]

            def _decode(self, ids, mask, hidden, past):
                own, cross = DynamicCache(), DynamicCache()
                for i in range(layers):
                    own.update(past[4 * i], past[4 * i + 1], i)
                    cross.update(past[4 * i + 2], past[4 * i + 3], i)
                cache = EncoderDecoderCache(own, cross)
                cache.is_updated = {i: True for i in range(layers)}  # cross keys/values given: never recomputed
                out = self.lm(encoder_outputs=(hidden,), attention_mask=mask, decoder_input_ids=ids,
                              past_key_values=cache, use_cache=True)
                logits = out.logits if out.logits.dtype == torch.float32 else out.logits.float()
                present = []
                for layer in out.past_key_values.self_attention_cache.layers[:layers]:
                    present += [layer.keys, layer.values]
                return [logits, *present]

            def forward(self, *args):
                enc, rest = args[:n_enc], args[n_enc:]
                ids, rest = rest[0], rest[1:]
                mask, rest = (rest[0], rest[1:]) if masked else (None, rest)
                hidden, past = rest[0], rest[1:]
                return (*self._encode(enc), *self._decode(ids, mask, hidden, past))

        return _Step(model).eval()


@dataclass
class _Loaded:
    model: object
    spec: Seq2SeqSpec
    example: InputSet
    wrapper: object
    digest: str
    version: str


def is_seq2seq_checkpoint(path: Path) -> bool:
    """A checkpoint directory whose config.json says it is an encoder-decoder (read as JSON: no import)."""
    import json

    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and cfg.get("is_encoder_decoder") is True


def from_checkpoint(path: Path):
    """The encoder-decoder saved in ``path`` (safetensors only: nothing is unpickled), in float32."""
    tf = _transformers()
    errors = []
    for auto in (tf.AutoModelForSeq2SeqLM, tf.AutoModelForSpeechSeq2Seq):
        try:
            with quiet(*_LOGGERS):
                model, info = auto.from_pretrained(str(path), dtype="float32", use_safetensors=True,
                                                   local_files_only=True, output_loading_info=True)
        except (ValueError, KeyError, OSError) as e:
            errors.append(first_line(e))
            continue
        missing = sorted(info.get("missing_keys") or [])
        if missing:
            raise InputError(f"{path}: the checkpoint is missing tensors the model needs: {', '.join(missing[:5])}")
        return model
    raise InputError(f"{path}: transformers could not load this encoder-decoder checkpoint: {errors[-1]}")


class HFSeq2SeqConverter:
    name = "hf-seq2seq"
    suffixes: tuple[str, ...] = ()  # checkpoint *directories* (``pipeline.sources`` detects them) or in-memory models

    def accepts(self, obj: object) -> bool:
        return is_seq2seq(obj)

    def convert(self, source, example_inputs: InputSet | None, ref: str, options: ImportOptions) -> ConvertResult:
        if isinstance(source, (str, Path)):
            source = from_checkpoint(Path(source))
        src = load(source, example_inputs)
        onnx_model = _export(src, options)
        sig = signature_of(onnx_model)
        if sig.input_names != src.spec.input_names() or sig.output_names != src.spec.output_names():
            raise ConversionError(f"hf-seq2seq->onnx: the exported graph has {sig.input_names} -> {sig.output_names}")
        ir = IRModel(onnx_model, sig, Provenance(self.name, ref, src.digest, src.version,
                                                 "dynamo (encoder + decoder with KV cache)"))
        check_inputs(src.example, sig, "example inputs")
        reference = torch_runner(src.wrapper, src.spec.input_names(), src.spec.output_names())
        return ConvertResult(ir=ir, reference=reference, reference_name=f"{src.version} eager",
                             example_inputs=src.example, source_model=src.model, seq2seq=src.spec)


def load(model, example_inputs: InputSet | None = None) -> _Loaded:
    """The spec, fixed example inputs and wrapper of an in-memory encoder-decoder (nothing exported)."""
    torch = _torch()
    tf = _transformers()
    if not is_seq2seq(model):
        raise InputError(f"hf-seq2seq: {type(model).__name__} is not a transformers encoder-decoder "
                         "(*ForConditionalGeneration with config.is_encoder_decoder)")
    model.eval()
    cfg = model.config
    audio = "input_features" in getattr(model, "main_input_name", "input_ids")
    enc_inputs = ("input_features",) if audio else ("input_ids", "attention_mask")
    gen = getattr(model, "generation_config", None)

    def pick(name):
        v = getattr(gen, name, None) if gen is not None else None
        return v if v is not None else getattr(cfg, name, None)

    start = pick("decoder_start_token_id")
    if start is None:
        start = pick("pad_token_id")
    if not isinstance(start, int):
        raise InputError(f"hf-seq2seq: {type(model).__name__} has no integer decoder_start_token_id in its config")
    eos = pick("eos_token_id")
    layers = int(getattr(cfg, "decoder_layers", None) or getattr(cfg, "num_decoder_layers", None)
                 or cfg.num_layers)
    heads = int(getattr(cfg, "decoder_attention_heads", None) or cfg.num_heads)
    hidden = int(getattr(cfg, "d_model"))
    head_dim = int(getattr(cfg, "d_kv", 0) or hidden // heads)
    version = f"transformers {tf.__version__}, torch {torch.__version__.split('+')[0]}"
    digest = sha256_arrays({k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()})
    spec = Seq2SeqSpec(model_type=str(cfg.model_type), layers=layers, heads=heads, head_dim=head_dim, hidden=hidden,
                       vocab=int(cfg.vocab_size), encoder_inputs=enc_inputs, decoder_start_token_id=start,
                       eos_token_id=eos, pad_token_id=pick("pad_token_id"), generate=_greedy_reference(model, start, eos))
    encoder = _encoder_example(example_inputs, model, spec)
    spec = _with_prompts(spec, _prompts(model, spec, encoder))
    wrapper = Seq2SeqStep.wrap(model, spec)
    return _Loaded(model, spec, _union_example(wrapper, spec, encoder), wrapper, digest, version)


# --- inputs: the example, the union example, the generation prompts ---------------------------------------

def _special(model) -> set[int]:
    cfg = model.config
    out = set()
    for name in ("pad_token_id", "eos_token_id", "bos_token_id", "decoder_start_token_id", "unk_token_id"):
        v = getattr(cfg, name, None)
        out |= set(v) if isinstance(v, (list, tuple)) else ({v} if isinstance(v, int) else set())
    return out


def _text_rows(model, rows: int, length: int, seed: int) -> np.ndarray:
    """Seeded token ids that avoid the special ids (an EOS inside the source text is legal but dull)."""
    special = _special(model)
    vocab = int(model.config.vocab_size)
    pool = np.array([i for i in range(vocab) if i not in special], np.int64)
    return np.random.default_rng(seed).choice(pool, size=(rows, length))


def synth_features(model, rows: int, seed: int) -> np.ndarray:
    """Log-mel features as Whisper's own feature extractor computes them, from synthetic audio: a few
    harmonic tones with a glide, an amplitude envelope and a little noise, at a sample rate and hop that
    give exactly the frames the model's encoder takes (2 × max_source_positions)."""
    tf = _transformers()
    cfg = model.config
    frames = int(cfg.max_source_positions) * 2
    hop, rate = 50, 1600
    seconds = frames * hop // rate
    if seconds * rate != frames * hop:
        raise InputError(f"hf-seq2seq: cannot synthesize {frames} feature frames; pass `input_features` as example inputs")
    fe = tf.WhisperFeatureExtractor(feature_size=int(cfg.num_mel_bins), sampling_rate=rate, hop_length=hop,
                                    chunk_length=seconds, n_fft=2 * hop)
    rng = np.random.default_rng(seed)
    t = np.arange(seconds * rate) / rate
    waves = []
    for _ in range(rows):
        f0 = rng.uniform(80, 300)
        glide = rng.uniform(-0.5, 0.5)
        phase = 2 * np.pi * f0 * (t + glide * t * t / 2)
        wave = sum(rng.uniform(0.2, 1.0) / k * np.sin(k * phase) for k in (1, 2, 3))
        envelope = np.clip(np.sin(np.pi * t / t[-1] * rng.integers(1, 4)) ** 2, 0, 1)
        waves.append((0.3 * wave * envelope + 0.01 * rng.standard_normal(t.size)).astype(np.float32))
    out = fe(waves, sampling_rate=rate, return_tensors="np")["input_features"]
    return np.ascontiguousarray(out[:, :, :frames].astype(np.float32))


def _encoder_example(example_inputs, model, spec: Seq2SeqSpec) -> InputSet:
    """The caller's encoder inputs (a dict by name, a tuple, or a bare array), or fixed synthetic ones."""
    if example_inputs is not None:
        if isinstance(example_inputs, dict):
            first = example_inputs.get(spec.encoder_inputs[0])
            if first is None:
                raise InputError(f"example inputs for {type(model).__name__} need '{spec.encoder_inputs[0]}', got "
                                 f"{sorted(example_inputs)}")
        else:
            first = example_inputs[0] if isinstance(example_inputs, (tuple, list)) else example_inputs
        first = np.asarray(first.detach().cpu().numpy() if hasattr(first, "detach") else first)
        if spec.masked:
            if first.dtype.kind not in "iu" or first.ndim != 2:
                raise InputError(f"input_ids must be a 2-D integer array (batch, tokens), got {first.dtype} {first.shape}")
            return {"input_ids": first.astype(np.int64), "attention_mask": np.ones(first.shape, np.int64)}
        if first.ndim != 3:
            raise InputError(f"input_features must be (batch, mel bins, frames), got {first.shape}")
        return {"input_features": first.astype(np.float32)}
    if spec.masked:
        ids = _text_rows(model, 2, 12, seed=0)
        return {"input_ids": ids, "attention_mask": np.ones(ids.shape, np.int64)}
    return {"input_features": synth_features(model, 2, seed=0)}


def _prompts(model, spec: Seq2SeqSpec, encoder: InputSet) -> tuple[Seq2SeqPrompt, ...]:
    """``PROMPTS`` encoder inputs of batch 1: the example's rows, then seeded ones (text of other lengths)."""
    start = (spec.decoder_start_token_id,)
    first = encoder[spec.encoder_inputs[0]]
    rows = [first[i:i + 1] for i in range(min(len(first), PROMPTS))]
    for k in range(PROMPTS - len(rows)):
        rows.append(_text_rows(model, 1, 5 + 4 * k, seed=100 + k) if spec.masked
                    else synth_features(model, 1, seed=100 + k))
    out = []
    for r in rows:
        enc = ({"input_ids": r.astype(np.int64), "attention_mask": np.ones(r.shape, np.int64)} if spec.masked
               else {"input_features": r.astype(np.float32)})
        out.append(Seq2SeqPrompt(enc, start))
    return tuple(out)


def _with_prompts(spec: Seq2SeqSpec, prompts) -> Seq2SeqSpec:
    import dataclasses

    return dataclasses.replace(spec, prompts=prompts)


def _union_example(wrapper, spec: Seq2SeqSpec, encoder: InputSet) -> InputSet:
    """The encoder inputs, and a decoder step with a real cache: the decoder side runs on the encoder
    output of other rows, shorter (its own batch and lengths, so the exporter ties no encoder dim to a
    decoder dim), ``_PAST`` tokens already cached and ``_NEW`` fed now."""
    torch = _torch()
    names = spec.encoder_inputs
    batch = len(encoder[names[0]])
    rows = [r % batch for r in range(batch + 1)]  # one row more than the encoder side
    if spec.masked:
        cut = max(1, encoder["input_ids"].shape[1] - 2)
        short = [torch.from_numpy(encoder[n][rows, :cut]) for n in names]
    else:
        short = [torch.from_numpy(encoder[n][rows]) for n in names]
    batch = int(short[0].shape[0])
    rng = np.random.default_rng(1)
    ids = np.concatenate([np.full((batch, 1), spec.decoder_start_token_id, np.int64),
                          rng.integers(0, spec.vocab, size=(batch, _PAST + _NEW - 1))], axis=1)
    empty = np.zeros((batch, spec.heads, 0, spec.head_dim), np.float32)
    with torch.inference_mode():
        last, *cross = wrapper._encode(short)
        mask = short[1] if spec.masked else None
        past = []
        for i in range(spec.layers):
            past += [torch.from_numpy(empty), torch.from_numpy(empty), cross[2 * i], cross[2 * i + 1]]
        _, *own = wrapper._decode(torch.from_numpy(ids[:, :_PAST]), mask, last, past)
    example = dict(encoder)
    example["decoder_input_ids"] = ids[:, _PAST:].copy()
    if spec.masked:
        example["encoder_attention_mask"] = mask.numpy().copy()
    example["encoder_hidden_states"] = last.numpy().copy()
    for i in range(spec.layers):
        for j, (side, kind) in enumerate((("decoder", "key"), ("decoder", "value"), ("encoder", "key"),
                                          ("encoder", "value"))):
            t = own[2 * i + j] if side == "decoder" else cross[2 * i + j - 2]
            example[spec.past_name(i, kind, side)] = np.ascontiguousarray(t.numpy())
    return {n: example[n] for n in spec.input_names()}


def _greedy_reference(model, start: int, eos):
    """transformers' own ``generate(do_sample=False)``: new tokens and each step's raw logits."""
    torch = _torch()
    tf = _transformers()

    def decode(prompt: Seq2SeqPrompt, n: int):
        kwargs = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in prompt.encoder.items()}
        cfg = tf.GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=n, min_new_tokens=0,
                                  decoder_start_token_id=start, eos_token_id=eos,
                                  pad_token_id=eos if isinstance(eos, int) else 0)
        with quiet(*_LOGGERS), torch.inference_mode():
            out = model.generate(**kwargs, generation_config=cfg, output_logits=True, return_dict_in_generate=True)
        tokens = out.sequences[0, len(prompt.start):].tolist()
        logits = torch.stack([s[0] for s in out.logits]).float().numpy() if out.logits else np.zeros((0, 1))
        return tokens, logits

    return decode


def _export(src: _Loaded, options: ImportOptions):
    torch = _torch()
    spec = src.spec
    names = spec.input_names()
    args = tuple(torch.from_numpy(np.ascontiguousarray(src.example[n])) for n in names)
    Dim = torch.export.Dim
    batch, dec_batch = Dim("batch_size"), Dim("decoder_batch_size")  # one name again in each file
    enc_len = Dim("encoder_sequence_length")
    cross_len = Dim("past_encoder_sequence_length")
    dec_len = Dim("decoder_sequence_length")
    past_len = Dim("past_decoder_sequence_length")
    dims: list = []
    for n in spec.encoder_inputs:
        dims.append({0: batch} if n == "input_features" else {0: batch, 1: enc_len})  # Whisper: fixed frames
    dims.append({0: dec_batch, 1: dec_len})
    if spec.masked:
        dims.append({0: dec_batch, 1: cross_len})
    dims.append({0: dec_batch, 1: cross_len})
    for i in range(spec.layers):
        dims += [{0: dec_batch, 2: past_len}, {0: dec_batch, 2: past_len}, {0: dec_batch, 2: cross_len},
                 {0: dec_batch, 2: cross_len}]
    try:
        with quiet(*_LOGGERS), torch.inference_mode(False):
            # torch's own decompositions first: the ONNX exporter's table loses T5's ``contiguous()`` after
            # a transpose under dynamic shapes ("Cannot view a tensor with shape …", pytorch#136543)
            program = torch.export.export(src.wrapper, args, dynamic_shapes=(tuple(dims),))  # forward(*args)
            program = program.run_decompositions()
            program = torch.onnx.export(program, args, dynamo=True, input_names=names,
                                        output_names=spec.output_names(), opset_version=options.opset,
                                        optimize=True, external_data=False, verbose=False)
    except Exception as e:  # the exporter raises many types
        raise ConversionError(f"hf-seq2seq->onnx: the dynamo exporter failed on {type(src.model).__name__}: "
                              f"{first_line(e, with_type=True)}") from e
    name_dims(program.model, spec)
    return program.model


def dim_names(spec: Seq2SeqSpec) -> dict[str, tuple[str, ...]]:
    """Each input's and output's symbolic dims by position (Optimum's axis names); a fixed dim stays fixed."""
    b, enc, dec, past = "batch_size", "encoder_sequence_length", "decoder_sequence_length", "past_decoder_sequence_length"
    out = {"input_ids": (b, enc), "attention_mask": (b, enc), "input_features": (b,),
           "decoder_input_ids": (b, dec), "encoder_attention_mask": (b, enc), "encoder_hidden_states": (b, enc),
           "last_hidden_state": (b, enc), "logits": (b, dec)}
    for i in range(spec.layers):
        for k in ("key", "value"):
            out[spec.past_name(i, k, "decoder")] = (b, "", past)
            out[spec.past_name(i, k, "encoder")] = (b, "", "past_encoder_sequence_length")
            out[spec.present_name(i, k, "encoder")] = (b, "", enc)
            out[spec.present_name(i, k, "decoder")] = (b, "", f"{past} + {dec}")
    return out


def name_dims(model, spec: Seq2SeqSpec) -> None:
    """Give the graph's inputs and outputs readable dim names (an exported program numbers them s0, s1 …)."""
    import onnx_ir

    names = dim_names(spec)
    for v in [*model.graph.inputs, *model.graph.outputs]:
        want = names.get(v.name, ())
        if v.shape is None:
            continue
        dims = [d if isinstance(d, int) or i >= len(want) or not want[i] else want[i] for i, d in enumerate(v.shape)]
        v.shape = onnx_ir.Shape(dims)
