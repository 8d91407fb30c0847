"""CPU feature parsing and the int8 settings chosen from it (parsed from flag sets, so any CPU can test)."""

from __future__ import annotations

from forgeml.passes.precision.cpu_features import detect, int8_settings, parse


def test_vnni_gets_full_range():
    f = parse("x86_64", {"avx2", "avx512f", "avx512_vnni"})
    s = int8_settings(f)
    assert f.isa == "avx512_vnni" and s.reduce_range is False and s.per_channel and s.activation_type == "uint8"


def test_avx2_without_vnni_reduces_range():
    s = int8_settings(parse("x86_64", {"avx2", "fma"}))
    assert s.isa == "avx2" and s.reduce_range is True


def test_arm64_uses_signed_activations():
    s = int8_settings(parse("aarch64", {"asimd", "asimddp"}))
    assert s.isa == "arm64-dotprod" and s.activation_type == "int8" and s.reduce_range is False


def test_this_machine_is_detected():
    f = detect()
    assert f.arch and int8_settings(f).isa == f.isa
