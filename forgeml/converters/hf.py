"""Hugging Face decoder LLMs → ONNX IR: a local checkpoint directory or an in-memory ``transformers`` model.

A checkpoint directory holds ``config.json``, tokenizer files and safetensors weights. It is checked
before anything is loaded (config readable, tokenizer present, every safetensors header sound, no
pickled weights), then loaded with ``transformers`` in float32 for the export, or in the checkpoint's
own dtype when only the reference is needed (``reference_only(..., dtype="checkpoint")``).

The IR is the decoder **with its KV cache** (``KVDecoder``): ``input_ids``, ``attention_mask``,
``position_ids`` and ``past_key_values.{i}.key/value`` in, ``logits`` and ``present.{i}.key/value``
out, (batch, kv_heads, past, head_dim), the names onnxruntime-genai and Optimum's ORT decoders use.
A wrapper module takes the flat tensors, builds the ``DynamicCache`` inside ``forward`` and returns
the updated layers flat, so torch.export never has to flatten a cache object. An architecture whose
cache cannot be exported that way falls back to the logits forward (``input_ids -> logits``, no
cache), and the route says why. The reference runner is the same wrapper in torch eager; the
result's ``decoder`` carries the layout and transformers' own greedy ``generate`` for generation parity.

The converter keeps the checkpoint path on the result so targets that write from the source (GGUF)
stream the original tensors instead of the exported graph's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forgeml.ir import ConvertResult

from forgeml.converters.base import ImportOptions
from forgeml.runtime.quiet import quiet
from forgeml.errors import ConversionError, InputError, first_line, require
from forgeml.ir import DecoderSpec, IRModel, Provenance, sha256_arrays, signature_of
from forgeml.runtime import InputSet
from forgeml.parity.inputs import check_inputs
from forgeml.runtime.torch import torch_runner
from forgeml.formats.hf_checkpoint import (  # noqa: F401  (re-exported: the checks belong to the source)
    TOKENIZER_FILES, check_checkpoint, is_checkpoint_dir, local_tokenizer_dir, read_config, safetensors_files)
_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "torch._export", "onnxscript", "torch.fx",
            "transformers")
# Fixed text for the default example inputs when the caller gives none.
EXAMPLE_TEXT = ("The quick brown fox jumps over the lazy dog. A model conversion is only as good as the "
                "numbers it keeps: every stage is compared with the source framework on the same tokens, "
                "and a file that drifts is reported with the stage, the output and the size of the error. "
                "def convert(model, inputs):\n    return [layer(x) for x in inputs]\n")


def _torch():
    return require("torch", "torch")


def _transformers():
    return require("transformers", "gguf")


# --- the converter ---------------------------------------------------------------------------------

class LogitsOnly:
    """Factory for a torch module wrapping a causal LM: ``input_ids -> logits`` without a KV cache."""

    @staticmethod
    def wrap(model):
        torch = _torch()

        class _Logits(torch.nn.Module):
            def __init__(self, lm):
                super().__init__()
                self.lm = lm

            def forward(self, input_ids):
                logits = self.lm(input_ids=input_ids, use_cache=False).logits
                return logits if logits.dtype == torch.float32 else logits.float()  # 16-bit references

        return _Logits(model).eval()


class KVDecoder:
    """Factory for a torch module over a causal LM with a KV cache taken and returned as flat tensors.

    ``forward(input_ids, attention_mask, position_ids, *past)`` where ``past`` alternates key and value
    per layer, (batch, kv_heads, past, head_dim); returns ``(logits, *present)`` in the same order. The
    cache object lives only inside ``forward``: the exporter sees tensors in and tensors out.
    """

    @staticmethod
    def wrap(model, layers: int):
        torch = _torch()
        DynamicCache = _transformers().DynamicCache

        class _KV(torch.nn.Module):
            def __init__(self, lm):
                super().__init__()
                self.lm = lm

            def forward(self, input_ids, attention_mask, position_ids, *past):
                cache = DynamicCache(config=self.lm.config)
                for i in range(layers):
                    cache.update(past[2 * i], past[2 * i + 1], i)
                out = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              past_key_values=cache, use_cache=True)
                logits = out.logits if out.logits.dtype == torch.float32 else out.logits.float()
                present = []
                for layer in out.past_key_values.layers[:layers]:
                    present += [layer.keys, layer.values]
                return (logits, *present)

        return _KV(model).eval()


class HFWeights:
    """The transformers model's own state dict; ``runner_with`` loads other weights into a copy."""

    def __init__(self, model, decoder: DecoderSpec | None = None):
        torch = _torch()
        self.framework = f"transformers {_transformers().__version__} (torch {torch.__version__.split('+')[0]})"
        self._model = model
        self._decoder = decoder  # the runner has the KV signature when the IR has it

    def named(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().float().numpy() for k, v in self._model.state_dict().items()}

    def runner_with(self, weights: dict[str, np.ndarray]):
        torch = _torch()
        clone = copy.deepcopy(self._model)
        try:
            clone.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()},
                                  strict=True)
        except RuntimeError as e:
            raise ConversionError(f"the weights do not fit the source model: {first_line(e)}") from e
        if self._decoder is not None:
            d = self._decoder
            return torch_runner(KVDecoder.wrap(clone, d.layers), d.input_names(), d.output_names())
        return torch_runner(LogitsOnly.wrap(clone), ["input_ids"], ["logits"])


class HFConverter:
    name = "hf"
    suffixes: tuple[str, ...] = ()  # checkpoint *directories*; forgeml.pipeline.sources detects them

    def accepts(self, obj: object) -> bool:
        """In-memory causal LMs from transformers (other transformers models stay with the torch converter)."""
        mods = [c.__module__ for c in type(obj).__mro__]
        if not any(m.startswith("transformers.") for m in mods) or not hasattr(obj, "config"):
            return False
        name = type(obj).__name__
        return name.endswith(("ForCausalLM", "LMHeadModel"))

    def convert(self, source, example_inputs: InputSet | None, ref: str, options: ImportOptions) -> ConvertResult:
        src = load_source(source, example_inputs)
        why = ""
        if options.kv_cache:
            try:
                return _convert_with_cache(src, ref, options)
            except ConversionError as e:
                why = f"the KV-cache export failed: {e}"
        onnx_model = _export(src.wrapper, src.example, options)
        sig = signature_of(onnx_model)
        if sig.input_names != ["input_ids"] or sig.output_names != ["logits"]:
            raise ConversionError(f"hf->onnx: the exported graph has {sig.input_names} -> {sig.output_names}, "
                                  "expected ['input_ids'] -> ['logits']")
        route = "dynamo (logits forward, no KV cache)" + ("" if options.kv_cache else ": `options.kv_cache` is off")
        ir = IRModel(onnx_model, sig, Provenance("hf", ref, src.digest, src.version, route, fallback=why))
        check_inputs(src.example, sig, "example inputs")
        return ConvertResult(ir=ir, reference=src.reference, reference_name=f"{src.version} eager",
                             example_inputs=src.example, weights=HFWeights(src.model), source_model=src.model,
                             checkpoint=src.checkpoint)

    def reference_only(self, source, example_inputs: InputSet | None, ref: str, *,
                       dtype: str = "float32", kv_cache: bool = False, weight_fn=None,
                       digest: bool = True) -> ConvertResult:
        """The transformers model as a runner, without the ONNX export (``forgeml parity`` needs no graph).

        ``dtype="checkpoint"`` loads a checkpoint dir in the dtype it is stored in (float16/bfloat16 stay
        16-bit: no float32 copy of the weights); ``"float32"`` upcasts, as the export does. The result's
        ``ir`` has no model, only the signature every export of this converter has:
        ``input_ids (batch, tokens) int64 -> logits (batch, tokens, vocab) float32``. With ``kv_cache``
        the reference is the KV-cache decoder (``forgeml parity SRC decoder.onnx``) and ``decoder`` is set.
        """
        from forgeml.ir import Signature, TensorSpec

        src = load_source(source, example_inputs, dtype=dtype, weight_fn=weight_fn, digest=digest)
        if kv_cache:
            example, spec, wrapper = _kv_source(src)
            ir = IRModel(None, kv_signature(spec), Provenance("hf", ref, src.digest, src.version,
                                                              "not exported (reference only, KV cache)"))
            return ConvertResult(ir=ir, reference=torch_runner(wrapper, spec.input_names(), spec.output_names()),
                                 reference_name=f"{src.version} eager", example_inputs=example,
                                 weights=HFWeights(src.model, spec), source_model=src.model,
                                 checkpoint=src.checkpoint, decoder=spec)
        vocab = int(src.model.config.vocab_size)
        sig = Signature((TensorSpec("input_ids", ("batch", "tokens"), "int64"),),
                        (TensorSpec("logits", ("batch", "tokens", vocab), "float32"),))
        ir = IRModel(None, sig, Provenance("hf", ref, src.digest, src.version, "not exported (reference only)"))
        return ConvertResult(ir=ir, reference=src.reference, reference_name=f"{src.version} eager",
                             example_inputs=src.example, weights=HFWeights(src.model), source_model=src.model,
                             checkpoint=src.checkpoint)


    def source_only(self, source, example_inputs: InputSet | None, ref: str, *,
                    route: str = "not exported, not loaded (outputs not compared)") -> ConvertResult:
        """A checkpoint dir described without loading it: its signature from config.json, its digest from
        the safetensors files, no reference and no torch/transformers import in this process (for
        `parity.outputs` off, or when the reference runs in a child process: ``hf_child``)."""
        from importlib.metadata import PackageNotFoundError, version

        from forgeml.ir import Signature, TensorSpec, sha256_files

        if not isinstance(source, Path):
            raise InputError(f"{ref}: `parity.outputs` off needs a checkpoint directory; an in-memory model is "
                             "already loaded, so its outputs are compared")
        cfg = check_checkpoint(source)
        vocab = int(cfg.get("vocab_size") or 0)
        sig = Signature((TensorSpec("input_ids", ("batch", "tokens"), "int64"),),
                        (TensorSpec("logits", ("batch", "tokens", vocab or "vocab"), "float32"),))
        digest = sha256_arrays({f.name: np.frombuffer(bytes.fromhex(h), np.uint8)
                                for f, h in sha256_files(safetensors_files(source)).items()})
        try:
            framework = f"transformers {version('transformers')}, torch {version('torch').split('+')[0]}"
        except PackageNotFoundError:
            framework = "transformers (not installed)"
        ir = IRModel(None, sig, Provenance("hf", ref, digest, framework, route))
        return ConvertResult(ir=ir, reference=None, reference_name="", example_inputs={}, checkpoint=source)


@dataclass
class LoadedSource:
    """A checked, loaded decoder and its fixed inputs: everything but the ONNX export."""

    model: object
    wrapper: object  # input_ids -> logits
    checkpoint: Path | None
    example: InputSet
    reference: object  # Runner over the transformers model
    digest: str
    version: str


def load_source(source, example_inputs: InputSet | None = None, dtype: str = "float32",
                weight_fn=None, digest: bool = True) -> LoadedSource:
    """Check and load a checkpoint dir (or take an in-memory model) and fix its example token ids.
    ``dtype``: float32, "checkpoint" for the dtype config.json records (16-bit stays 16-bit), or
    "streamed" (float32 arithmetic, weights read from disk module by module: ``hf_stream``)."""
    torch = _torch()
    transformers = _transformers()
    checkpoint: Path | None = None
    if isinstance(source, Path):
        from forgeml.ir import sha256_files

        checkpoint = source
        cfg = check_checkpoint(source)
        if dtype == "streamed":  # weights stay on disk; each module reads its own around its forward
            from forgeml.converters.hf_stream import streamed_model

            model = streamed_model(source, weight_fn)
        else:
            model = _load(source, checkpoint_dtype(cfg) if dtype == "checkpoint" else torch.float32)
        digest = sha256_arrays({f.name: np.frombuffer(bytes.fromhex(h), np.uint8)
                                for f, h in sha256_files(safetensors_files(source)).items()}) if digest else ""
    else:
        model = source
        digest = sha256_arrays({k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()})
    model.eval()
    example = _example(example_inputs, checkpoint or local_tokenizer_dir(model), model)
    wrapper = LogitsOnly.wrap(model)
    version = f"transformers {transformers.__version__}, torch {torch.__version__.split('+')[0]}"
    reference = torch_runner(wrapper, ["input_ids"], ["logits"])
    if dtype == "streamed" and checkpoint is not None:
        from forgeml.converters.hf_stream import StreamedReference

        reference = StreamedReference(reference)
    return LoadedSource(model, wrapper, checkpoint, example, reference, digest, version)


def checkpoint_dtype(cfg: dict):
    """The torch dtype a checkpoint's config.json records (``dtype``, or the older ``torch_dtype``);
    float32 when it names none or something else."""
    torch = _torch()
    name = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32")
    return {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(name, torch.float32)


def _load(path: Path, dtype):
    transformers = _transformers()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # the CLI draws its own progress
    try:
        with quiet(*_LOGGERS):
            model, info = transformers.AutoModelForCausalLM.from_pretrained(
                str(path), dtype=dtype, use_safetensors=True, local_files_only=True,
                output_loading_info=True)
    except (ValueError, KeyError, OSError) as e:
        first = first_line(e)
        raise InputError(f"{path}: transformers could not load this checkpoint as a causal LM: {first}") from e
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(f"{path}: the checkpoint is missing tensors the model needs: {shown}")
    mismatched = info.get("mismatched_keys") or []
    if mismatched:
        raise InputError(f"{path}: tensors with the wrong shape for config.json: {list(mismatched)[:5]}")
    return model


def _example(example_inputs, tok_dir: Path | None, model) -> InputSet:
    """The caller's input ids, or two 32-token windows of a fixed text (64 fixed positions)."""
    torch = _torch()
    if example_inputs is not None:
        if isinstance(example_inputs, dict):
            ids = example_inputs.get("input_ids")
            if ids is None:
                raise InputError(f"example inputs for a decoder LLM need 'input_ids', got {sorted(example_inputs)}")
        else:
            ids = example_inputs[0] if isinstance(example_inputs, (tuple, list)) else example_inputs
        if isinstance(ids, torch.Tensor):
            ids = ids.detach().cpu().numpy()
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu" or ids.ndim != 2:
            raise InputError(f"input_ids must be a 2-D integer array (batch, tokens), got {ids.dtype} {ids.shape}")
        return {"input_ids": ids.astype(np.int64)}
    vocab = int(model.config.vocab_size)
    if tok_dir is not None:
        tok = _transformers().AutoTokenizer.from_pretrained(str(tok_dir))
        ids = tok(EXAMPLE_TEXT * 4, add_special_tokens=False)["input_ids"]
    else:  # no tokenizer: fixed pseudo-random ids are still fixed token sequences
        ids = np.random.default_rng(0).integers(0, vocab, size=64).tolist()
    ids = [i for i in ids if i < vocab][:64]
    if not ids:
        raise InputError(f"{tok_dir}: the tokenizer gives no token id below the model's vocab_size ({vocab}) for "
                         "the example text; check that tokenizer and config.json belong together, or pass "
                         "example inputs (input_ids)")
    while len(ids) < 64:
        ids = ids + ids
    return {"input_ids": np.asarray(ids[:64], dtype=np.int64).reshape(2, 32)}


def _export(wrapper, example: InputSet, options: ImportOptions):
    torch = _torch()
    ids = torch.from_numpy(example["input_ids"])
    ctx = int(getattr(wrapper.lm.config, "max_position_embeddings", 0) or
              getattr(wrapper.lm.config, "n_positions", 0) or 2048)
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("tokens", min=1, max=max(ctx, ids.shape[1]))}
    try:
        with quiet(*_LOGGERS), torch.inference_mode(False):
            program = torch.onnx.export(wrapper, (ids,), dynamo=True, input_names=["input_ids"],
                                        output_names=["logits"], dynamic_shapes=(dims,),
                                        opset_version=options.opset, optimize=True, external_data=False,
                                        verbose=False)
    except Exception as e:  # the exporter raises many types
        first = first_line(e, with_type=True)
        raise ConversionError(f"hf->onnx: the dynamo exporter failed on {type(wrapper.lm).__name__}: {first}") from e
    return program.model


# --- the decoder with its KV cache -------------------------------------------------------------------

# Example inputs of the KV graph: the example rows split into a prefix already in the cache (its real
# keys and values, computed by the model) and the tokens fed now: both the past and the new-token path run.
_PAST_FRACTION = 0.75


def _convert_with_cache(src: LoadedSource, ref: str, options: ImportOptions) -> ConvertResult:
    example, spec, wrapper = _kv_source(src)
    onnx_model = _export_kv(wrapper, example, spec, options)
    sig = signature_of(onnx_model)
    if sig.input_names != spec.input_names() or sig.output_names != spec.output_names():
        raise ConversionError(f"the exported graph has {sig.input_names} -> {sig.output_names}")
    ir = IRModel(onnx_model, sig, Provenance("hf", ref, src.digest, src.version, "dynamo (decoder with KV cache)"))
    check_inputs(example, sig, "example inputs")
    reference = torch_runner(wrapper, spec.input_names(), spec.output_names())
    return ConvertResult(ir=ir, reference=reference, reference_name=f"{src.version} eager",
                         example_inputs=example, weights=HFWeights(src.model, spec), source_model=src.model,
                         checkpoint=src.checkpoint, decoder=spec)


def kv_signature(spec: DecoderSpec, dtype: str = "float32"):
    """The KV-cache decoder's signature, as the export writes it (for a reference without a graph)."""
    from forgeml.ir import Signature, TensorSpec

    past = ("batch", spec.kv_heads, "past_sequence_length", spec.head_dim)
    present = ("batch", spec.kv_heads, "past_sequence_length + sequence_length", spec.head_dim)
    ins = [TensorSpec("input_ids", ("batch", "sequence_length"), "int64"),
           TensorSpec("attention_mask", ("batch", "total_sequence_length"), "int64"),
           TensorSpec("position_ids", ("batch", "sequence_length"), "int64")]
    ins += [TensorSpec(n, past, dtype) for n in spec.input_names()[3:]]
    outs = [TensorSpec("logits", ("batch", "sequence_length", spec.vocab), "float32")]
    outs += [TensorSpec(n, present, dtype) for n in spec.output_names()[1:]]
    return Signature(tuple(ins), tuple(outs))


def _kv_source(src: LoadedSource):
    """(example inputs, DecoderSpec, KVDecoder wrapper) of a loaded causal LM, without exporting it."""
    torch = _torch()
    model = src.model
    ids = src.example["input_ids"]
    if ids.shape[1] < 2:
        raise ConversionError("hf->onnx (KV cache): the example needs 2+ tokens per row to split into past and new")
    layers = int(getattr(model.config, "num_hidden_layers"))
    past_len = max(1, int(ids.shape[1] * _PAST_FRACTION))
    try:
        with torch.inference_mode():
            prefix = model(input_ids=torch.from_numpy(ids[:, :past_len]), use_cache=True).past_key_values
        past = []
        for layer in prefix.layers[:layers]:
            past += [layer.keys.float().numpy(), layer.values.float().numpy()]
    except Exception as e:  # an architecture without a DynamicCache of plain key/value layers
        raise ConversionError(f"its cache is not a per-layer key/value cache ({first_line(e, with_type=True)})") from e
    if len(past) != 2 * layers or any(p.ndim != 4 for p in past):
        raise ConversionError(f"its cache has {len(past)} tensors, not 2 per layer of (batch, heads, seq, dim)")
    spec = _decoder_spec(src, layers, kv_heads=past[0].shape[1], head_dim=past[0].shape[3])
    batch, total = ids.shape
    example: InputSet = {"input_ids": ids[:, past_len:].copy(),
                         "attention_mask": np.ones((batch, total), np.int64),
                         "position_ids": np.broadcast_to(np.arange(past_len, total, dtype=np.int64),
                                                         (batch, total - past_len)).copy()}
    example.update({name: np.ascontiguousarray(a) for name, a in zip(spec.input_names()[3:], past)})
    return example, spec, KVDecoder.wrap(model, layers)


def _decoder_spec(src: LoadedSource, layers: int, *, kv_heads: int, head_dim: int) -> DecoderSpec:
    cfg = src.model.config
    heads = int(getattr(cfg, "num_attention_heads"))
    hidden = int(getattr(cfg, "hidden_size"))
    context = int(getattr(cfg, "max_position_embeddings", 0) or getattr(cfg, "n_positions", 0) or 2048)
    gen = getattr(src.model, "generation_config", None)

    def pick(name):
        v = getattr(gen, name, None) if gen is not None else None
        return v if v is not None else getattr(cfg, name, None)

    tok_dir = src.checkpoint or local_tokenizer_dir(src.model)
    eos = pick("eos_token_id")
    return DecoderSpec(model_type=str(getattr(cfg, "model_type", "")), layers=layers, heads=heads,
                       kv_heads=int(kv_heads), head_dim=int(head_dim), hidden=hidden,
                       vocab=int(cfg.vocab_size), context=context, bos_token_id=pick("bos_token_id"),
                       eos_token_id=eos, pad_token_id=pick("pad_token_id"),
                       generate=_greedy_reference(src.model, eos), tokenizer_dir=tok_dir,
                       prompts=_prompts(src.example["input_ids"]))


def _prompts(ids: np.ndarray):
    from forgeml.parity.generation import prompts_from

    return prompts_from(ids)


def _greedy_reference(model, eos):
    """transformers' own ``generate(do_sample=False)``: the new tokens and the raw logits of each step."""
    torch = _torch()
    transformers = _transformers()

    def decode(prompt: list[int], n: int):
        ids = torch.tensor([prompt], dtype=torch.long)
        cfg = transformers.GenerationConfig(do_sample=False, max_new_tokens=n, eos_token_id=eos,
                                            pad_token_id=eos if isinstance(eos, int) else 0, num_beams=1)
        with quiet(*_LOGGERS), torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=cfg,
                                 output_logits=True, return_dict_in_generate=True)
        tokens = out.sequences[0, len(prompt):].tolist()
        logits = torch.stack([s[0] for s in out.logits]).float().numpy() if out.logits else np.zeros((0, 1))
        return tokens, logits

    return decode


def _export_kv(wrapper, example: InputSet, spec: DecoderSpec, options: ImportOptions):
    torch = _torch()
    names = spec.input_names()
    args = tuple(torch.from_numpy(example[n]) for n in names)
    batch = torch.export.Dim("batch")
    seq = torch.export.Dim("sequence_length")
    total = torch.export.Dim("total_sequence_length")
    past = torch.export.Dim("past_sequence_length")
    dims = ({0: batch, 1: seq}, {0: batch, 1: total}, {0: batch, 1: seq},
            tuple({0: batch, 2: past} for _ in names[3:]))
    try:
        with quiet(*_LOGGERS), torch.inference_mode(False):
            program = torch.onnx.export(wrapper, args, dynamo=True, input_names=names,
                                        output_names=spec.output_names(), dynamic_shapes=dims,
                                        opset_version=options.opset, optimize=True, external_data=False,
                                        verbose=False)
    except Exception as e:  # the exporter raises many types
        raise ConversionError(f"the dynamo exporter failed on its KV-cache forward: {first_line(e, with_type=True)}") from e
    return program.model
