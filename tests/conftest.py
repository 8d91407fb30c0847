"""Shared fixtures: zoo conversions are done once per session (export takes seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import forgeml


@pytest.fixture(scope="session")
def zoo_runs(tmp_path_factory):
    """zoo name -> Conversion of that model to onnx + safetensors with the default passes."""
    cache: dict[str, forgeml.pipeline.run.Conversion] = {}

    def get(name: str):
        if name not in cache:
            out = tmp_path_factory.mktemp(f"zoo-{name}") / "out"
            cache[name] = forgeml.convert(f"zoo:{name}", targets=["onnx", "safetensors"], out_dir=out)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def int8_run(tmp_path_factory):
    """Out dir of `forgeml convert zoo:transformer --quantize int8 --to onnx,tflite,safetensors`.

    tflite only when forgeml[tflite] is installed. Several variants of one run, one of them quantized:
    the HTML report tests and the parity tests across artifact kinds share it.
    """
    import importlib.util

    from forgeml.cli.app import main

    tflite = all(importlib.util.find_spec(m) for m in ("onnx2tf", "ai_edge_litert"))
    targets = ("onnx", "tflite", "safetensors") if tflite else ("onnx", "safetensors")
    out = tmp_path_factory.mktemp("int8") / "out"
    code = main(["convert", "zoo:transformer", "--to", ",".join(targets), "--quantize", "int8", "-o", str(out)])
    assert code in (0, 1), code  # 1: a stage missed its tolerance; the report must still say so
    return out


def read_manifest(out_dir: Path) -> dict:
    return json.loads((Path(out_dir) / "manifest.json").read_text())
