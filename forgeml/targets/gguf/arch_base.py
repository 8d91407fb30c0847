"""The plan records every GGUF architecture module fills, and the pieces they share.

``TensorPlan``/``ArchPlan`` say what the writer streams; ``Dims``, ``decoder_metadata`` and ``rope_theta``
read a rotary RMS-norm decoder's config.json the one way llama.cpp's keys need; ``adder`` and
``require_sources`` build and check a plan's tensor list. Imported by ``arch`` (the dispatch) and by
the per-family modules, never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from forgeml.errors import TargetError


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


def cfg_get(cfg: dict, *keys, default=None):
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


def rope_theta(cfg: dict, model_type: str) -> float:
    """The rotary base; anything but default rotary embeddings (linear, yarn, longrope, …) is refused:
    llama.cpp would need scaling metadata or factor tensors this writer does not produce."""
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        rope = {}
    if any(isinstance(v, dict) for v in rope.values()):  # per layer type (transformers 5): one must do for all
        kinds = [v for v in rope.values() if isinstance(v, dict)]
        if any(k != kinds[0] for k in kinds):
            raise TargetError(f"gguf: {model_type} with different rope parameters per layer type is not supported")
        rope = kinds[0]
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", None):
        raise TargetError(f"gguf: rope scaling {rope_type!r} is not supported; only default rotary embeddings")
    return float(rope.get("rope_theta") or cfg.get("rope_theta") or 10000.0)


@dataclass(frozen=True)
class Dims:
    """The decoder's sizes as config.json gives them (``head_dim`` may differ from hidden / heads)."""

    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    layers: int
    ffn: int
    context: int
    vocab: int

    @classmethod
    def of(cls, cfg: dict) -> Dims:
        hidden, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
        return cls(hidden, heads, int(cfg_get(cfg, "num_key_value_heads", default=heads)),
                   int(cfg_get(cfg, "head_dim", default=hidden // heads)), int(cfg["num_hidden_layers"]),
                   int(cfg["intermediate_size"]), int(cfg_get(cfg, "max_position_embeddings", default=2048)),
                   int(cfg["vocab_size"]))


def decoder_metadata(arch: str, cfg: dict, d: Dims, theta: float, rope_dims: int | None = None
                     ) -> dict[str, tuple[str, object]]:
    """The hyperparameters every rotary RMS-norm decoder in llama.cpp reads, under ``arch``'s prefix."""
    md: dict[str, tuple[str, object]] = {
        f"{arch}.context_length": ("u32", d.context),
        f"{arch}.embedding_length": ("u32", d.hidden),
        f"{arch}.block_count": ("u32", d.layers),
        f"{arch}.feed_forward_length": ("u32", d.ffn),
        f"{arch}.attention.head_count": ("u32", d.heads),
        f"{arch}.attention.head_count_kv": ("u32", d.kv_heads),
        f"{arch}.rope.freq_base": ("f32", theta),
        f"{arch}.rope.dimension_count": ("u32", d.head_dim if rope_dims is None else rope_dims),
        f"{arch}.attention.layer_norm_rms_epsilon": ("f32", float(cfg_get(cfg, "rms_norm_eps", default=1e-6))),
        f"{arch}.vocab_size": ("u32", d.vocab),
    }
    if d.head_dim * d.heads != d.hidden:  # llama.cpp assumes hidden / heads unless told
        md[f"{arch}.attention.key_length"] = ("u32", d.head_dim)
        md[f"{arch}.attention.value_length"] = ("u32", d.head_dim)
    return md


def adder(p: ArchPlan, have: set[str], shapes):
    """``add(gguf_name, source_name, transform=None, transform_name="", row_block=1)`` appending to ``p``."""
    def add(gguf: str, src: str, transform=None, tname: str = "", row_block: int = 1) -> None:
        p.tensors.append(TensorPlan(gguf, src, tuple(shapes(src)) if src in have else (), transform, tname,
                                    row_block))
    return add


def require_sources(p: ArchPlan, have: set[str]) -> None:
    missing = [t.source for t in p.tensors if t.source not in have]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise TargetError(f"gguf: the {p.hf_type} checkpoint is missing tensors: {shown}")
