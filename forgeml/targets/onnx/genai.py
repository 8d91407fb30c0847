"""onnxruntime-genai's files beside a KV-cache decoder: ``genai_config.json`` and the tokenizer.

The config names the decoder's inputs and outputs (``past_key_values.%d.key`` …), its shape (layers,
heads, kv heads, head size) and the special tokens, so ``onnxruntime_genai.Model(dir)`` and its
Generator run the model without the Hugging Face checkpoint. Greedy search (``do_sample`` false,
``num_beams`` 1) is the default, the decoding generation parity compares. The tokenizer files are
copied from the source checkpoint (genai reads ``tokenizer.json`` and ``tokenizer_config.json``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from forgeml.fileio import write_bytes_atomic
from forgeml.formats.hf_checkpoint import TOKENIZER_FILES
from forgeml.ir import DecoderSpec

CONFIG_NAME = "genai_config.json"
# Beside TOKENIZER_FILES: what genai and transformers read to rebuild the same tokenizer.
_TOKENIZER_EXTRA = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
                    "merges.txt", "tokenizer.model", "generation_config.json", "chat_template.jinja")
# model_type values genai 0.18 runs as a decoder with split past key/value inputs. Its own "gpt2" type
# expects one combined past per layer (an older layout), so GPT-2 and anything unlisted is "decoder",
# genai's generic decoder-only type.
_GENAI_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2"})


def genai_type(model_type: str) -> str:
    return model_type if model_type in _GENAI_TYPES else "decoder"


def genai_config(spec: DecoderSpec, model_file: str) -> dict:
    """The config onnxruntime-genai's decoder-only model reads."""
    eos = spec.eos_token_id
    pad = spec.pad_token_id if spec.pad_token_id is not None else (eos[0] if isinstance(eos, list) else eos)
    return {
        "model": {
            "bos_token_id": spec.bos_token_id if spec.bos_token_id is not None else -1,
            "context_length": spec.context,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": model_file,
                "head_size": spec.head_dim,
                "hidden_size": spec.hidden,
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                           "position_ids": "position_ids", "past_key_names": "past_key_values.%d.key",
                           "past_value_names": "past_key_values.%d.value"},
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                            "present_value_names": "present.%d.value"},
                "num_attention_heads": spec.heads,
                "num_hidden_layers": spec.layers,
                "num_key_value_heads": spec.kv_heads,
            },
            "eos_token_id": eos if eos is not None else -1,
            "pad_token_id": pad if pad is not None else -1,
            "type": genai_type(spec.model_type),
            "vocab_size": spec.vocab,
        },
        "search": {"do_sample": False, "num_beams": 1, "max_length": spec.context, "min_length": 0,
                   "past_present_share_buffer": False, "repetition_penalty": 1.0, "temperature": 1.0,
                   "top_k": 1, "top_p": 1.0, "early_stopping": True, "length_penalty": 1.0,
                   "no_repeat_ngram_size": 0, "num_return_sequences": 1, "diversity_penalty": 0.0},
    }


def write_genai_files(spec: DecoderSpec, out_dir: Path, model_file: str) -> list[Path]:
    """``genai_config.json`` and the source's tokenizer files in ``out_dir``; returns the paths written."""
    path = out_dir / CONFIG_NAME
    write_bytes_atomic(path, json.dumps(genai_config(spec, model_file), indent=2).encode())
    written = [path]
    if spec.tokenizer_dir is not None:
        for name in dict.fromkeys((*TOKENIZER_FILES, *_TOKENIZER_EXTRA)):
            src = Path(spec.tokenizer_dir) / name
            if src.is_file():
                dst = out_dir / name
                tmp = out_dir / f".{name}.tmp"
                shutil.copyfile(src, tmp)
                tmp.replace(dst)
                written.append(dst)
    return written
