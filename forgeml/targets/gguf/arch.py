"""Architectures the GGUF target writes: hyperparameters, tensor names and layout changes per family.

A plan says, for one checkpoint, which GGUF architecture it becomes, the metadata llama.cpp reads
for it, and every output tensor: its GGUF name, the source tensor it comes from and how it is
transformed on the way (Q/K row permutation for llama's rotary layout, GPT-2's Conv1D transpose).
Nothing here reads tensor data; the writer streams it. This module holds the dispatch, the llama
family (llama, mistral, qwen2, qwen3) and gpt2; phi3 and gemma2, whose layouts and hyperparameters
differ more, have a module each (``arch_phi3``, ``arch_gemma2``); the plan records and the pieces
they share are in ``arch_base``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from forgeml.errors import TargetError
from forgeml.targets.gguf.arch_base import (  # noqa: F401  (ArchPlan, TensorPlan: re-exported for the writer)
    ArchPlan, Dims, TensorPlan, cfg_get, adder, decoder_metadata, require_sources, rope_theta)
from forgeml.targets.gguf.arch_gemma2 import plan_gemma2
from forgeml.targets.gguf.arch_phi3 import plan_phi3

SUPPORTED = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "gpt2": "gpt2", "phi3": "phi3",
             "qwen3": "qwen3", "gemma2": "gemma2"}
"""HF ``model_type`` -> GGUF architecture."""


def unsupported(model_type: str) -> TargetError:
    known = ", ".join(f"{k} (as {v})" if k != v else k for k, v in SUPPORTED.items())
    return TargetError(f"gguf: architecture {model_type!r} is not supported; forgeml writes GGUF for: {known}")


def plan(cfg: dict, names: list[str], shapes: Callable[[str], tuple[int, ...]], model_name: str) -> ArchPlan:
    """The plan for a checkpoint with config.json ``cfg`` and source tensors ``names``."""
    model_type = str(cfg.get("model_type", ""))
    if model_type not in SUPPORTED:
        raise unsupported(model_type)
    if model_type == "gpt2":
        p = _gpt2(cfg, names, shapes, model_name)
    elif model_type == "phi3":
        p = plan_phi3(cfg, names, shapes, model_name)
    elif model_type == "gemma2":
        p = plan_gemma2(cfg, names, shapes, model_name)
    else:
        p = _llama_family(cfg, names, shapes, model_name, model_type)
    _check_shapes(p, shapes)
    return p


# --- llama, mistral, qwen2, qwen3 ---------------------------------------------------------------

def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF stores rotary pairs as (first half, second half) of each head; llama.cpp's llama rope
    rotates adjacent pairs. Interleave the halves so the same rotation lands on the same values."""
    rows = w.shape[0]
    head_dim = rows // n_head
    return (w.reshape(n_head, 2, head_dim // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def _llama_family(cfg: dict, names: list[str], shapes, model_name: str, model_type: str) -> ArchPlan:
    arch = SUPPORTED[model_type]
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise TargetError(f"gguf: {model_type} with hidden_act={act!r} is not supported (llama.cpp computes silu)")
    if model_type != "qwen2" and (cfg.get("attention_bias") or cfg.get("mlp_bias")):
        raise TargetError(f"gguf: {model_type} with attention_bias/mlp_bias is not supported")
    theta = rope_theta(cfg, model_type)
    d = Dims.of(cfg)
    n_head, n_kv, head_dim, layers, context, vocab = d.heads, d.kv_heads, d.head_dim, d.layers, d.context, d.vocab
    md = decoder_metadata(arch, cfg, d, theta)
    p = ArchPlan(model_type, arch, model_name, context, vocab, md)
    sw = cfg.get("sliding_window")
    if sw and int(sw) < context and (model_type not in ("qwen2", "qwen3") or cfg.get("use_sliding_window")):
        p.notes.append(f"sliding_window={sw} is not written: llama.cpp attends to the whole context, so outputs "
                       f"differ from the source beyond {sw} tokens")
    # qwen2/qwen3 use llama.cpp's NEOX rope, which matches HF's layout: no permutation.
    permute = model_type not in ("qwen2", "qwen3")
    have = set(names)
    add = adder(p, have, shapes)

    add("token_embd.weight", "model.embed_tokens.weight")
    for i in range(layers):
        pre, blk = f"model.layers.{i}.", f"blk.{i}."
        add(blk + "attn_norm.weight", pre + "input_layernorm.weight")
        if permute:
            # Per head, so any run of whole heads can be permuted alone (streamed in chunks).
            add(blk + "attn_q.weight", pre + "self_attn.q_proj.weight",
                lambda w: permute_qk(w, w.shape[0] // head_dim), f"permute_qk({n_head})", head_dim)
            add(blk + "attn_k.weight", pre + "self_attn.k_proj.weight",
                lambda w: permute_qk(w, w.shape[0] // head_dim), f"permute_qk({n_kv})", head_dim)
        else:
            add(blk + "attn_q.weight", pre + "self_attn.q_proj.weight")
            add(blk + "attn_k.weight", pre + "self_attn.k_proj.weight")
        add(blk + "attn_v.weight", pre + "self_attn.v_proj.weight")
        if model_type == "qwen2":
            for x in "qkv":
                add(blk + f"attn_{x}.bias", pre + f"self_attn.{x}_proj.bias")
        if model_type == "qwen3":  # RMS norms over each head's q and k, before the rotation
            add(blk + "attn_q_norm.weight", pre + "self_attn.q_norm.weight")
            add(blk + "attn_k_norm.weight", pre + "self_attn.k_norm.weight")
        add(blk + "attn_output.weight", pre + "self_attn.o_proj.weight")
        add(blk + "ffn_norm.weight", pre + "post_attention_layernorm.weight")
        add(blk + "ffn_gate.weight", pre + "mlp.gate_proj.weight")
        add(blk + "ffn_up.weight", pre + "mlp.up_proj.weight")
        add(blk + "ffn_down.weight", pre + "mlp.down_proj.weight")
    add("output_norm.weight", "model.norm.weight")
    # Tied embeddings: llama.cpp reuses token_embd when output.weight is absent.
    if "lm_head.weight" in have and not cfg.get("tie_word_embeddings", False):
        add("output.weight", "lm_head.weight")
    require_sources(p, have)
    return p


# --- gpt2 ----------------------------------------------------------------------------------------

def _gpt2(cfg: dict, names: list[str], shapes, model_name: str) -> ArchPlan:
    act = cfg.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        raise TargetError(f"gguf: gpt2 with activation_function={act!r} is not supported (llama.cpp computes the "
                          "tanh GELU approximation)")
    if cfg.get("scale_attn_by_inverse_layer_idx") or cfg.get("reorder_and_upcast_attn") is True:
        raise TargetError("gguf: gpt2 with scale_attn_by_inverse_layer_idx/reorder_and_upcast_attn is not supported")
    hidden = int(cfg["n_embd"])
    layers = int(cfg["n_layer"])
    context = int(cfg_get(cfg, "n_positions", "n_ctx", default=1024))
    vocab = int(cfg["vocab_size"])
    md: dict[str, tuple[str, object]] = {
        "gpt2.context_length": ("u32", context),
        "gpt2.embedding_length": ("u32", hidden),
        "gpt2.block_count": ("u32", layers),
        "gpt2.feed_forward_length": ("u32", int(cfg_get(cfg, "n_inner", default=4 * hidden))),
        "gpt2.attention.head_count": ("u32", int(cfg["n_head"])),
        "gpt2.attention.layer_norm_epsilon": ("f32", float(cfg_get(cfg, "layer_norm_epsilon", default=1e-5))),
        "gpt2.vocab_size": ("u32", vocab),
    }
    p = ArchPlan("gpt2", "gpt2", model_name, context, vocab, md)
    have = set(names)
    prefix = "transformer." if "transformer.wte.weight" in have else ""

    def t(w: np.ndarray) -> np.ndarray:  # Conv1D stores (in, out); GGUF wants (out, in) rows
        return np.ascontiguousarray(w.T)

    def add(gguf: str, src: str, transform=None, tname: str = "") -> None:
        shape = tuple(shapes(src)) if src in have else ()
        if transform is t and shape:
            shape = shape[::-1]
        p.tensors.append(TensorPlan(gguf, src, shape, transform, tname, 0 if transform is t else 1))

    add("token_embd.weight", prefix + "wte.weight")
    add("position_embd.weight", prefix + "wpe.weight")
    for i in range(layers):
        pre, blk = f"{prefix}h.{i}.", f"blk.{i}."
        for part in ("weight", "bias"):
            add(blk + f"attn_norm.{part}", pre + f"ln_1.{part}")
            add(blk + f"ffn_norm.{part}", pre + f"ln_2.{part}")
        add(blk + "attn_qkv.weight", pre + "attn.c_attn.weight", t, "transpose")
        add(blk + "attn_qkv.bias", pre + "attn.c_attn.bias")
        add(blk + "attn_output.weight", pre + "attn.c_proj.weight", t, "transpose")
        add(blk + "attn_output.bias", pre + "attn.c_proj.bias")
        add(blk + "ffn_up.weight", pre + "mlp.c_fc.weight", t, "transpose")
        add(blk + "ffn_up.bias", pre + "mlp.c_fc.bias")
        add(blk + "ffn_down.weight", pre + "mlp.c_proj.weight", t, "transpose")
        add(blk + "ffn_down.bias", pre + "mlp.c_proj.bias")
    add("output_norm.weight", prefix + "ln_f.weight")
    add("output_norm.bias", prefix + "ln_f.bias")
    head = "lm_head.weight" if "lm_head.weight" in have and not cfg.get("tie_word_embeddings", True) \
        else prefix + "wte.weight"
    add("output.weight", head)
    require_sources(p, have)
    return p


# llama.cpp sets per-token attributes by ``general.name``: a name containing one of these words makes
# its vocabulary loader look these tokens up, and loading aborts ("unordered_map::at") if one is missing.
NAME_TOKENS = {("phi-3", "phi3"): ("</s>", "<unk>", "<s>", "<|endoftext|>")}


def name_for_vocab(p: ArchPlan, tokens: list[str]) -> None:
    """Keep ``p.name`` unless llama.cpp would refuse the file for it with this vocabulary: then write the
    name with that word spelled so it does not match (``phi3`` -> ``phi_3``) and say so in the notes."""
    have = set(tokens)
    for words, needed in NAME_TOKENS.items():
        lowered = p.name.lower()
        hit = [w for w in words if w in lowered]
        missing = [t for t in needed if t not in have]
        if hit and missing:
            name = p.name
            for w in words:
                while w in name.lower():
                    i = name.lower().index(w)
                    name = name[:i] + name[i:i + len(w)].replace("-", "").replace("3", "_3") + name[i + len(w):]
            p.notes.append(f"general.name {p.name!r} written as {name!r}: llama.cpp looks up the tokens "
                           f"{', '.join(needed)} for a model named {hit[0]!r} and fails to load without "
                           f"{', '.join(missing)}")
            p.name = name


# --- checks --------------------------------------------------------------------------------------

def _check_shapes(p: ArchPlan, shapes) -> None:
    embd = next(t for t in p.tensors if t.name == "token_embd.weight")
    if embd.shape[0] != p.vocab_size:
        raise TargetError(f"gguf: token_embd has {embd.shape[0]} rows but config.json says vocab_size="
                          f"{p.vocab_size}")
    for t in p.tensors:
        if len(t.shape) not in (1, 2):
            raise TargetError(f"gguf: tensor {t.source} has shape {t.shape}; expected 1-D or 2-D")
