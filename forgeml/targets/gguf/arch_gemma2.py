"""Gemma-2 as llama.cpp's ``gemma2`` architecture: what HF computes beside the tensors, as metadata.

llama.cpp's gemma2 graph hard-codes some of Gemma-2 and reads the rest from keys, so each HF setting
is either written, checked to equal what the graph assumes, or refused:
- RMS norms: HF multiplies by ``1 + weight``, llama.cpp by the stored weight, so every norm weight is
  stored plus one (in f32, as 1-D tensors always are here).
- Embeddings scaled by sqrt(hidden_size), GELU (tanh) gated MLP, NEOX rotary, tied output: in the graph.
- ``attn_logit_softcapping`` / ``final_logit_softcapping``: written; the graph always caps, so a
  checkpoint without one is refused.
- ``sliding_window`` and which layers use it (``layer_types``): written as the window and a per-layer
  pattern, so the mask does not depend on llama.cpp's default alternation.
- ``query_pre_attn_scalar``: not read; llama.cpp scales by head_dim (hidden / heads for the 46-layer
  model), so any other value is refused.
"""

from __future__ import annotations

import numpy as np

from forgeml.errors import TargetError
from forgeml.targets.gguf.arch_base import ArchPlan, Dims, adder, decoder_metadata, require_sources, rope_theta

ACTS = ("gelu_pytorch_tanh", "gelu_new", "gelu_fast")  # the tanh approximation llama.cpp computes


def plus_one(w: np.ndarray) -> np.ndarray:
    return w + np.float32(1.0)


def plan_gemma2(cfg: dict, names: list[str], shapes, model_name: str) -> ArchPlan:
    act = cfg.get("hidden_activation") or cfg.get("hidden_act") or "gelu_pytorch_tanh"
    if act not in ACTS:
        raise TargetError(f"gguf: gemma2 with hidden_activation={act!r} is not supported (llama.cpp computes the "
                          "tanh GELU approximation)")
    if cfg.get("attention_bias"):
        raise TargetError("gguf: gemma2 with attention_bias is not supported (llama.cpp's gemma2 has no output bias)")
    d = Dims.of(cfg)
    theta = rope_theta(cfg, "gemma2")
    md = decoder_metadata("gemma2", cfg, d, theta)
    # Always written: llama.cpp's default sizes are hidden / heads, which Gemma-2 does not follow.
    md["gemma2.attention.key_length"] = ("u32", d.head_dim)
    md["gemma2.attention.value_length"] = ("u32", d.head_dim)
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        cap = cfg.get(key)
        if not cap:
            raise TargetError(f"gguf: gemma2 with {key}={cap!r} is not supported (llama.cpp's gemma2 always "
                              "soft-caps, with a default of its own)")
        md[f"gemma2.{key}"] = ("f32", float(cap))
    scalar = cfg.get("query_pre_attn_scalar")
    assumed = d.hidden // d.heads if d.layers == 46 else d.head_dim
    if scalar is not None and int(scalar) != assumed:
        raise TargetError(f"gguf: gemma2 with query_pre_attn_scalar={scalar} is not supported (llama.cpp scales "
                          f"attention by 1/sqrt({assumed}) for this model)")
    window = cfg.get("sliding_window")
    types = cfg.get("layer_types") or [("sliding_attention" if i % 2 == 0 else "full_attention")
                                       for i in range(d.layers)]
    if len(types) != d.layers or not set(types) <= {"sliding_attention", "full_attention"}:
        raise TargetError(f"gguf: gemma2 layer_types {types} are not {d.layers} of sliding_attention/full_attention")
    swa = [t == "sliding_attention" for t in types]
    if any(swa) and not window:
        raise TargetError("gguf: gemma2 has sliding_attention layers but no sliding_window")
    md["gemma2.attention.sliding_window"] = ("u32", int(window or d.context))
    md["gemma2.attention.sliding_window_pattern"] = ("bool_array", swa)
    p = ArchPlan("gemma2", "gemma2", model_name, d.context, d.vocab, md)
    have = set(names)
    if "lm_head.weight" in have and not cfg.get("tie_word_embeddings", True):
        raise TargetError("gguf: gemma2 with an untied lm_head is not supported (llama.cpp's gemma2 computes "
                          "logits with token_embd)")
    add = adder(p, have, shapes)

    def norm(gguf: str, src: str) -> None:
        add(gguf, src, plus_one, "plus_one")

    add("token_embd.weight", "model.embed_tokens.weight")
    for i in range(d.layers):
        pre, blk = f"model.layers.{i}.", f"blk.{i}."
        norm(blk + "attn_norm.weight", pre + "input_layernorm.weight")
        for x in "qkv":
            add(blk + f"attn_{x}.weight", pre + f"self_attn.{x}_proj.weight")
        add(blk + "attn_output.weight", pre + "self_attn.o_proj.weight")
        norm(blk + "post_attention_norm.weight", pre + "post_attention_layernorm.weight")
        norm(blk + "ffn_norm.weight", pre + "pre_feedforward_layernorm.weight")
        add(blk + "ffn_gate.weight", pre + "mlp.gate_proj.weight")
        add(blk + "ffn_up.weight", pre + "mlp.up_proj.weight")
        add(blk + "ffn_down.weight", pre + "mlp.down_proj.weight")
        norm(blk + "post_ffw_norm.weight", pre + "post_feedforward_layernorm.weight")
    norm("output_norm.weight", "model.norm.weight")
    require_sources(p, have)
    return p
