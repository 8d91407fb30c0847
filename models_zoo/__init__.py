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


def _from(module: str, builder: str) -> Callable[[], ZooBuild]:
    def build() -> ZooBuild:
        import importlib

        return getattr(importlib.import_module(f"models_zoo.{module}"), builder)()

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
        ZooModel("keras_cnn", "tensorflow", "Keras Sequential CNN on 32x32x3 NHWC images: conv, batchnorm, "
                 "pooling, dropout, dense; 10 classes", _from("keras_models", "build_cnn")),
        ZooModel("keras_two_inputs", "tensorflow", "Keras functional model, two inputs (features, sequence) "
                 "and two heads (scores, value)", _from("keras_models", "build_two_inputs")),
        ZooModel("sk_iris", "sklearn", "StandardScaler + LogisticRegression trained on iris; label + "
                 "probabilities", _from("sklearn_models", "build_iris")),
        ZooModel("sk_digits", "sklearn", "StandardScaler + PCA + MLPClassifier trained on digits (8x8 images); "
                 "label + probabilities", _from("sklearn_models", "build_digits")),
        ZooModel("sk_breast_cancer", "sklearn", "ColumnTransformer (numeric + string column) + RandomForest "
                 "trained on breast_cancer", _from("sklearn_models", "build_breast_cancer")),
        ZooModel("sk_diabetes", "sklearn", "StandardScaler + Ridge regression trained on diabetes",
                 _from("sklearn_models", "build_diabetes")),
        ZooModel("transformer-base", "torch",
                 "6-layer transformer encoder, hidden 384, 6 heads, 128 token ids; 5 classes (for benchmarks: "
                 "the MatMuls dominate)", _torch("build_transformer_base")),
        ZooModel("tiny-llama", "hf", "Llama checkpoint dir (2 layers, GQA 4/2 heads, SentencePiece BPE tokenizer), "
                 "briefly trained on stdlib text", _from("hf_models", "build_tiny_llama")),
        ZooModel("tiny-mistral", "hf", "Mistral checkpoint dir, same shape and tokenizer as tiny-llama",
                 _from("hf_models", "build_tiny_mistral")),
        ZooModel("tiny-qwen2", "hf", "Qwen2 checkpoint dir (q/k/v biases, byte-level BPE with qwen2's "
                 "pre-tokenizer)", _from("hf_models", "build_tiny_qwen2")),
        ZooModel("tiny-gpt2", "hf", "GPT-2 checkpoint dir (byte-level BPE with gpt2's pre-tokenizer)",
                 _from("hf_models", "build_tiny_gpt2")),
        ZooModel("tiny-phi3", "hf", "Phi-3 checkpoint dir (fused qkv and gate/up projections, GQA 4/2, "
                 "SentencePiece BPE)", _from("hf_models", "build_tiny_phi3")),
        ZooModel("tiny-qwen3", "hf", "Qwen3 checkpoint dir (q/k norms, tied embeddings, qwen2's byte-level BPE)",
                 _from("hf_models", "build_tiny_qwen3")),
        ZooModel("tiny-gemma2", "hf", "Gemma-2 checkpoint dir (logit soft-capping, sliding-window layers, tied "
                 "embeddings, SentencePiece BPE)", _from("hf_models", "build_tiny_gemma2")),
    ]
}
