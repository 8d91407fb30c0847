"""Phi-3 as llama.cpp's ``phi3`` architecture: the checkpoint's fused tensors kept fused.

HF Phi-3 stores q, k and v as one ``qkv_proj`` (rows q | k | v) and the MLP's gate and up as one
``gate_up_proj`` (rows gate | up, ``silu(gate) * up``). llama.cpp's phi3 graph reads exactly that:
``attn_qkv`` split into q, k, v views in that order, and ``ffn_up`` of 2 x n_ff rows whose first half
goes through silu (its SwiGLU). Rotary is NEOX style, HF's own layout, so nothing is permuted: every
tensor is the source tensor under its GGUF name.
"""

from __future__ import annotations

from forgeml.errors import TargetError
from forgeml.targets.gguf.arch_base import ArchPlan, Dims, adder, decoder_metadata, require_sources, rope_theta


def plan_phi3(cfg: dict, names: list[str], shapes, model_name: str) -> ArchPlan:
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise TargetError(f"gguf: phi3 with hidden_act={act!r} is not supported (llama.cpp's phi3 computes silu)")
    theta = rope_theta(cfg, "phi3")
    d = Dims.of(cfg)
    if d.head_dim * d.heads != d.hidden:
        raise TargetError(f"gguf: phi3 with head_dim={d.head_dim} x {d.heads} heads != hidden_size={d.hidden} "
                          "is not supported (llama.cpp's phi3 sizes q and the output projection by hidden_size)")
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    partial = float((rope if isinstance(rope, dict) else {}).get("partial_rotary_factor")
                    or cfg.get("partial_rotary_factor") or 1.0)
    rope_dims = int(d.head_dim * partial)
    md = decoder_metadata("phi3", cfg, d, theta, rope_dims)
    p = ArchPlan("phi3", "phi3", model_name, d.context, d.vocab, md)
    sw = cfg.get("sliding_window")
    if sw and int(sw) < d.context:
        # llama.cpp reads the key but switches Phi-3's sliding window off (it attends to everything).
        md["phi3.attention.sliding_window"] = ("u32", int(sw))
        p.notes.append(f"sliding_window={sw}: llama.cpp's phi3 attends to the whole context, so outputs differ "
                       f"from the source beyond {sw} tokens")
    have = set(names)
    add = adder(p, have, shapes)
    add("token_embd.weight", "model.embed_tokens.weight")
    for i in range(d.layers):
        pre, blk = f"model.layers.{i}.", f"blk.{i}."
        add(blk + "attn_norm.weight", pre + "input_layernorm.weight")
        add(blk + "attn_qkv.weight", pre + "self_attn.qkv_proj.weight")
        add(blk + "attn_output.weight", pre + "self_attn.o_proj.weight")
        add(blk + "ffn_norm.weight", pre + "post_attention_layernorm.weight")
        add(blk + "ffn_up.weight", pre + "mlp.gate_up_proj.weight")  # gate rows first: llama.cpp's SwiGLU order
        add(blk + "ffn_down.weight", pre + "mlp.down_proj.weight")
    add("output_norm.weight", "model.norm.weight")
    if "lm_head.weight" in have and not cfg.get("tie_word_embeddings", False):
        add("output.weight", "lm_head.weight")
    require_sources(p, have)
    _check_fused(p, d)
    return p


def _check_fused(p: ArchPlan, d: Dims) -> None:
    """The fused tensors hold what llama.cpp splits them into (else it fails to load, or splits wrongly)."""
    want = {"attn_qkv.weight": (d.hidden + 2 * d.kv_heads * d.head_dim, d.hidden),
            "ffn_up.weight": (2 * d.ffn, d.hidden)}
    for t in p.tensors:
        suffix = t.name.split(".", 2)[-1]
        if suffix in want and t.shape != want[suffix]:
            raise TargetError(f"gguf: phi3 tensor {t.source} has shape {t.shape}; llama.cpp expects {want[suffix]} "
                              "(q | k | v rows, or gate | up rows)")
