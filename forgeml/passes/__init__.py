"""Passes: ONNX IR → ONNX IR rewrites, each a small class with a typed config.

Every pass is an ``onnx_ir`` functional pass: it never mutates its input model and returns a
``PassResult`` saying whether it changed anything. The pipeline measures what changed (nodes, bytes)
and checks parity after each one. ``PASSES`` is the one table mapping CLI names to pass classes.
"""

from __future__ import annotations

from forgeml.passes.base import ForgePass, PassInputs, PassResult, from_proto, to_proto

__all__ = ["ForgePass", "PassInputs", "PassResult", "PASSES", "DEFAULT_PASSES", "make_pass", "from_proto", "to_proto"]


def _table() -> dict[str, type[ForgePass]]:
    from forgeml.passes.check import CheckPass
    from forgeml.passes.cleanup import CleanupPass
    from forgeml.passes.precision.fp16 import Fp16Pass
    from forgeml.passes.optimize import OptimizePass
    from forgeml.passes.precision.quantize import Int4Pass, Int8DynamicPass, Int8StaticPass
    from forgeml.passes.simplify import SimplifyPass

    return {p.name: p for p in (CheckPass, SimplifyPass, CleanupPass, OptimizePass, Fp16Pass, Int8DynamicPass,
                                Int8StaticPass, Int4Pass)}


PASSES: dict[str, type[ForgePass]] = _table()
DEFAULT_PASSES: tuple[str, ...] = ("check", "simplify", "cleanup")


def make_pass(name: str) -> ForgePass:
    from forgeml.errors import InputError

    try:
        return PASSES[name]()
    except KeyError:
        raise InputError(f"unknown pass {name!r}; known passes: {', '.join(PASSES)}") from None
