"""models_zoo.hf_models._cached: the one cache-build step for the HF checkpoints (tiny and big)."""

from __future__ import annotations

import pytest

from models_zoo.hf_models import _cached


def _build(calls):
    def build(d):
        calls.append(d)
        (d / "config.json").write_text("{}")
        (d / "model.safetensors").write_bytes(b"x")
    return build


def test_builds_once_then_reuses(tmp_path):
    calls = []
    final = tmp_path / "ckpt"
    assert _cached(final, _build(calls)) == final and (final / "config.json").is_file()
    assert _cached(final, _build(calls)) == final and len(calls) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp dir left behind


def test_a_stale_dir_without_config_is_replaced_not_returned(tmp_path):
    final = tmp_path / "ckpt"
    final.mkdir()
    (final / "model.safetensors").write_bytes(b"half")
    calls = []
    assert _cached(final, _build(calls)) == final and len(calls) == 1
    assert (final / "config.json").is_file() and (final / "model.safetensors").read_bytes() == b"x"


def test_a_build_without_config_fails_and_leaves_nothing(tmp_path):
    final = tmp_path / "ckpt"
    with pytest.raises(RuntimeError, match="config.json"):
        _cached(final, lambda d: (d / "model.safetensors").write_bytes(b"x"))
    assert not list(tmp_path.iterdir())
