"""Architectures the GGUF target writes: hyperparameters, tensor names and layout changes per family.

A plan says, for one checkpoint, which GGUF architecture it becomes, the metadata llama.cpp reads
for it, and every output tensor: its GGUF name, the source tensor it comes from and how it is
transformed on the way (Q/K row permutation for llama's rotary layout, GPT-2's Conv1D transpose).
Nothing here reads tensor data; the writer streams it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from forgeml.errors import TargetError

SUPPORTED = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "gpt2": "gpt2"}
"""HF ``model_type`` -> GGUF architecture."""


@dataclass
class TensorPlan:
    name: str  # GGUF tensor name
    source: str  # source (HF) tensor name
    shape: tuple[int, ...]  # numpy shape after the transform
    transform: Callable[[np.ndarray], np.ndarray] | None = None
    transform_name: str = ""
    # Rows the transform keeps together: the tensor may be streamed in chunks of a multiple of this
    # many rows (1: any rows; head_dim for the Q/K permutation); 0: only whole (a transpose).
    row_block: int = 1

    def apply(self, a: np.ndarray) -> np.ndarray:
        return self.transform(a) if self.transform is not None else a


@dataclass
class ArchPlan:
    hf_type: str
    arch: str  # GGUF general.architecture
    name: str
    context: int
    vocab_size: int
    metadata: dict[str, tuple[str, object]] = field(default_factory=dict)  # key -> (value type, value)
    tensors: list[TensorPlan] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _get(cfg: dict, *keys, default=None):
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


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
    else:
        p = _llama_family(cfg, names, shapes, model_name, model_type)
    _check_shapes(p, shapes)
    return p


# --- llama, mistral, qwen2 -----------------------------------------------------------------------

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
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    if rope_type not in ("default", None):
        raise TargetError(f"gguf: rope scaling {rope_type!r} is not supported; only default rotary embeddings")
    theta = float(_get(rope if isinstance(rope, dict) else {}, "rope_theta", default=None)
                  or cfg.get("rope_theta") or 10000.0)
    hidden = int(cfg["hidden_size"])
    n_head = int(cfg["num_attention_heads"])
    n_kv = int(_get(cfg, "num_key_value_heads", default=n_head))
    head_dim = int(_get(cfg, "head_dim", default=hidden // n_head))
    layers = int(cfg["num_hidden_layers"])
    context = int(_get(cfg, "max_position_embeddings", default=2048))
    vocab = int(cfg["vocab_size"])
    md: dict[str, tuple[str, object]] = {
        f"{arch}.context_length": ("u32", context),
        f"{arch}.embedding_length": ("u32", hidden),
        f"{arch}.block_count": ("u32", layers),
        f"{arch}.feed_forward_length": ("u32", int(cfg["intermediate_size"])),
        f"{arch}.attention.head_count": ("u32", n_head),
        f"{arch}.attention.head_count_kv": ("u32", n_kv),
        f"{arch}.rope.freq_base": ("f32", theta),
        f"{arch}.rope.dimension_count": ("u32", head_dim),
        f"{arch}.attention.layer_norm_rms_epsilon": ("f32", float(_get(cfg, "rms_norm_eps", default=1e-6))),
        f"{arch}.vocab_size": ("u32", vocab),
    }
    if head_dim * n_head != hidden:
        md[f"{arch}.attention.key_length"] = ("u32", head_dim)
        md[f"{arch}.attention.value_length"] = ("u32", head_dim)
    p = ArchPlan(model_type, arch, model_name, context, vocab, md)
    sw = cfg.get("sliding_window")
    if sw and int(sw) < context and (model_type != "qwen2" or cfg.get("use_sliding_window")):
        p.notes.append(f"sliding_window={sw} is not written: llama.cpp attends to the whole context, so outputs "
                       f"differ from the source beyond {sw} tokens")
    permute = model_type != "qwen2"  # qwen2 uses llama.cpp's NEOX rope, which matches HF's layout
    have = set(names)

    def add(gguf: str, src: str, transform=None, tname: str = "", row_block: int = 1) -> None:
        p.tensors.append(TensorPlan(gguf, src, tuple(shapes(src)) if src in have else (), transform, tname,
                                    row_block))

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
        add(blk + "attn_output.weight", pre + "self_attn.o_proj.weight")
        add(blk + "ffn_norm.weight", pre + "post_attention_layernorm.weight")
        add(blk + "ffn_gate.weight", pre + "mlp.gate_proj.weight")
        add(blk + "ffn_up.weight", pre + "mlp.up_proj.weight")
        add(blk + "ffn_down.weight", pre + "mlp.down_proj.weight")
    add("output_norm.weight", "model.norm.weight")
    # Tied embeddings: llama.cpp reuses token_embd when output.weight is absent.
    if "lm_head.weight" in have and not cfg.get("tie_word_embeddings", False):
        add("output.weight", "lm_head.weight")
    _require(p, have)
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
    context = int(_get(cfg, "n_positions", "n_ctx", default=1024))
    vocab = int(cfg["vocab_size"])
    md: dict[str, tuple[str, object]] = {
        "gpt2.context_length": ("u32", context),
        "gpt2.embedding_length": ("u32", hidden),
        "gpt2.block_count": ("u32", layers),
        "gpt2.feed_forward_length": ("u32", int(_get(cfg, "n_inner", default=4 * hidden))),
        "gpt2.attention.head_count": ("u32", int(cfg["n_head"])),
        "gpt2.attention.layer_norm_epsilon": ("f32", float(_get(cfg, "layer_norm_epsilon", default=1e-5))),
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
    _require(p, have)
    return p


# --- checks --------------------------------------------------------------------------------------

def _require(p: ArchPlan, have: set[str]) -> None:
    missing = [t.source for t in p.tensors if t.source not in have]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise TargetError(f"gguf: the {p.hf_type} checkpoint is missing tensors: {shown}")


def _check_shapes(p: ArchPlan, shapes) -> None:
    embd = next(t for t in p.tensors if t.name == "token_embd.weight")
    if embd.shape[0] != p.vocab_size:
        raise TargetError(f"gguf: token_embd has {embd.shape[0]} rows but config.json says vocab_size="
                          f"{p.vocab_size}")
    for t in p.tensors:
        if len(t.shape) not in (1, 2):
            raise TargetError(f"gguf: tensor {t.source} has shape {t.shape}; expected 1-D or 2-D")
