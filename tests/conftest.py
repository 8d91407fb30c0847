"""Shared fixtures: zoo conversions are done once per session (export takes seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import forgeml


@pytest.fixture(scope="session")
def zoo_runs(tmp_path_factory):
    """zoo name -> Conversion of that model to onnx + safetensors with the default passes."""
    cache: dict[str, forgeml.pipeline.Conversion] = {}

    def get(name: str):
        if name not in cache:
            out = tmp_path_factory.mktemp(f"zoo-{name}") / "out"
            cache[name] = forgeml.convert(f"zoo:{name}", targets=["onnx", "safetensors"], out_dir=out)
        return cache[name]

    return get


def read_manifest(out_dir: Path) -> dict:
    return json.loads((Path(out_dir) / "manifest.json").read_text())
