"""Hugging Face decoder LLMs → ONNX IR: a local checkpoint directory or an in-memory ``transformers`` model.

A checkpoint directory holds ``config.json``, tokenizer files and safetensors weights. It is checked
before anything is loaded (config readable, tokenizer present, every safetensors header sound, no
pickled weights), then loaded with ``transformers`` in float32 for the export, or in the checkpoint's
own dtype when only the reference is needed (``reference_only(..., dtype="checkpoint")``). The IR is the decoder's logits forward
(``input_ids -> logits``, no KV cache) exported with the dynamo exporter, batch and sequence dynamic;
the reference runner is the transformers model itself in torch eager.

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
from forgeml.ir import IRModel, Provenance, sha256_arrays, signature_of
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


class HFWeights:
    """The transformers model's own state dict; ``runner_with`` loads other weights into a copy."""

    def __init__(self, model):
        torch = _torch()
        self.framework = f"transformers {_transformers().__version__} (torch {torch.__version__.split('+')[0]})"
        self._model = model

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
        onnx_model = _export(src.wrapper, src.example, options)
        sig = signature_of(onnx_model)
        if sig.input_names != ["input_ids"] or sig.output_names != ["logits"]:
            raise ConversionError(f"hf->onnx: the exported graph has {sig.input_names} -> {sig.output_names}, "
                                  "expected ['input_ids'] -> ['logits']")
        ir = IRModel(onnx_model, sig, Provenance("hf", ref, src.digest, src.version,
                                                 "dynamo (logits forward, no KV cache)"))
        check_inputs(src.example, sig, "example inputs")
        return ConvertResult(ir=ir, reference=src.reference, reference_name=f"{src.version} eager",
                             example_inputs=src.example, weights=HFWeights(src.model), source_model=src.model,
                             checkpoint=src.checkpoint)

    def reference_only(self, source, example_inputs: InputSet | None, ref: str, *,
                       dtype: str = "float32") -> ConvertResult:
        """The transformers model as a runner, without the ONNX export (``forgeml parity`` needs no graph).

        ``dtype="checkpoint"`` loads a checkpoint dir in the dtype it is stored in (float16/bfloat16 stay
        16-bit: no float32 copy of the weights); ``"float32"`` upcasts, as the export does. The result's
        ``ir`` has no model, only the signature every export of this converter has:
        ``input_ids (batch, tokens) int64 -> logits (batch, tokens, vocab) float32``.
        """
        from forgeml.ir import Signature, TensorSpec

        src = load_source(source, example_inputs, dtype=dtype)
        vocab = int(src.model.config.vocab_size)
        sig = Signature((TensorSpec("input_ids", ("batch", "tokens"), "int64"),),
                        (TensorSpec("logits", ("batch", "tokens", vocab), "float32"),))
        ir = IRModel(None, sig, Provenance("hf", ref, src.digest, src.version, "not exported (reference only)"))
        return ConvertResult(ir=ir, reference=src.reference, reference_name=f"{src.version} eager",
                             example_inputs=src.example, weights=HFWeights(src.model), source_model=src.model,
                             checkpoint=src.checkpoint)


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


def load_source(source, example_inputs: InputSet | None = None, dtype: str = "float32") -> LoadedSource:
    """Check and load a checkpoint dir (or take an in-memory model) and fix its example token ids.
    ``dtype``: float32, "checkpoint" for the dtype config.json records (16-bit stays 16-bit), or
    "streamed" (float32 arithmetic, weights read from disk module by module: ``hf_stream``)."""
    torch = _torch()
    transformers = _transformers()
    checkpoint: Path | None = None
    if isinstance(source, Path):
        from forgeml.ir import sha256_file

        checkpoint = source
        cfg = check_checkpoint(source)
        if dtype == "streamed":  # weights stay on disk; each module reads its own around its forward
            from forgeml.converters.hf_stream import streamed_model

            model = streamed_model(source)
        else:
            model = _load(source, checkpoint_dtype(cfg) if dtype == "checkpoint" else torch.float32)
        digest = sha256_arrays({f.name: np.frombuffer(bytes.fromhex(sha256_file(f)), np.uint8)
                                for f in safetensors_files(source)})
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
