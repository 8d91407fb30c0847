"""Small deterministic models of every source kind: the built-in default for demos, tests and benches.

``ZOO`` is the one table mapping a name (as in ``zoo:cnn``) to a builder. Builders import their
framework lazily, so listing the zoo never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class ZooBuild:
    """What a builder returns: the model in its own framework and everything needed to export it."""

    model: Any
    example_inputs: dict[str, np.ndarray]
    output_names: list[str]
    dynamic_batch: bool = True  # whether the model is meant to take any batch size


@dataclass(frozen=True)
class ZooModel:
    name: str
    kind: str  # the converter that imports it: "torch", …
    description: str
    build: Callable[[], ZooBuild] = field(repr=False)


def _torch(builder: str) -> Callable[[], ZooBuild]:
    def build() -> ZooBuild:
        from models_zoo import torch_models

        return getattr(torch_models, builder)()

    return build


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in [
        ZooModel("mlp", "torch", "3-layer MLP on 20 features, 3 classes", _torch("build_mlp")),
        ZooModel("cnn", "torch", "CNN on 3x32x32 images: conv, batchnorm, relu, pooling, linear; 10 classes",
                 _torch("build_cnn")),
        ZooModel("transformer", "torch",
                 "2-layer transformer encoder on 16 token ids: embedding, multi-head attention, layernorm, "
                 "GELU, mean-pool classifier head; 5 classes", _torch("build_transformer")),
        ZooModel("transformer-base", "torch",
                 "6-layer transformer encoder, hidden 384, 6 heads, 128 token ids; 5 classes (for benchmarks: "
                 "the MatMuls dominate)", _torch("build_transformer_base")),
    ]
}
