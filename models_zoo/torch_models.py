"""The torch zoo. Seeded, and initialised so outputs depend on the inputs (see FACTS: parity on
random-weight models whose outputs are nearly constant measures nothing)."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models_zoo import ZooBuild


@contextmanager
def _seeded(seed: int):
    """Build under a fixed seed without disturbing the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _kaiming(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.normal_(m.bias, std=0.1)


class MLP(nn.Module):
    def __init__(self, features: int = 20, hidden: int = 64, classes: int = 3):
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.fc2(F.relu(self.fc1(x)))))


class CNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class EncoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ff: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, ff)
        self.ff2 = nn.Linear(ff, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x))))


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int = 100, seq: int = 16, d: int = 32, heads: int = 4, layers: int = 2,
                 classes: int = 5):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(seq, d) * 0.5)
        self.layers = nn.ModuleList(EncoderLayer(d, heads, 4 * d) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.tok(input_ids) + self.pos[: input_ids.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return self.head(self.ln(x).mean(dim=1))


def _randomise_norms(module: nn.Module) -> None:
    """Non-trivial affine and running statistics, so an exporter that drops them is caught."""
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.normal_(m.weight, 1.0, 0.2)
            nn.init.normal_(m.bias, 0.0, 0.2)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0.0, 0.3)
            m.running_var.uniform_(0.5, 2.0)


def build_mlp() -> ZooBuild:
    with _seeded(0):
        model = MLP()
        _kaiming(model)
    x = np.random.default_rng(0).normal(size=(4, 20)).astype(np.float32)
    return ZooBuild(model.eval(), {"x": x}, ["logits"])


def build_cnn() -> ZooBuild:
    with _seeded(1):
        model = CNN()
        _kaiming(model)
        _randomise_norms(model)
    x = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    return ZooBuild(model.eval(), {"x": x}, ["logits"])


def build_transformer() -> ZooBuild:
    with _seeded(2):
        model = TinyTransformer()
        _randomise_norms(model)
        for layer in model.layers:
            nn.init.normal_(layer.qkv.weight, std=0.3)
    ids = np.random.default_rng(2).integers(0, 100, size=(2, 16)).astype(np.int64)
    return ZooBuild(model.eval(), {"input_ids": ids}, ["logits"])


def build_transformer_base() -> ZooBuild:
    """6 layers, hidden 384, 6 heads, sequence 128: big enough that the MatMuls dominate (bench/quantize.py)."""
    with _seeded(3):
        model = TinyTransformer(vocab=1000, seq=128, d=384, heads=6, layers=6, classes=5)
        _randomise_norms(model)
        nn.init.normal_(model.head.weight, std=0.5)  # peaked logits: top-1 measures the model, not ties
    ids = np.random.default_rng(3).integers(0, 1000, size=(1, 128)).astype(np.int64)
    return ZooBuild(model.eval(), {"input_ids": ids}, ["logits"])
