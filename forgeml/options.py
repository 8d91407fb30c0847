"""The option objects ``forgeml.convert`` takes besides ``ImportOptions`` (``forgeml.converters.base``)
and each target's ``Config``: what to quantize and within which budget, and how parity is checked.
Plain frozen records: the CLI builds them from its flags, the pipeline reads them."""

from __future__ import annotations

from dataclasses import dataclass

from forgeml.ir import InputSet


@dataclass(frozen=True)
class QuantizeOptions:
    """Lower the precision after the float passes, within an accuracy budget.

    ``mode``: fp16 | int8 (dynamic) | int8-static | int4. ``calibration``: representative input dicts
    (first axis = samples) for int8-static; ``synthetic_calibration`` calibrates on seeded random inputs
    instead (flagged in the report). ``max_cosine_drop`` / ``min_top1``: the budget against the float
    model (default: the precision's profile). ``min_centered_cosine``: the budget on the input-dependent
    part of the outputs (each minus its mean over the batch; needs batches of 2+), which plain cosine
    cannot see on models whose outputs barely vary. ``calibrate_method``: how int8-static turns
    calibration activations into ranges (minmax | entropy | percentile).
    """

    mode: str
    calibration: tuple[InputSet, ...] = ()
    synthetic_calibration: bool = False
    max_cosine_drop: float | None = None
    min_top1: float | None = None
    min_centered_cosine: float | None = None
    calibrate_method: str = "minmax"


@dataclass(frozen=True)
class ParityOptions:
    """How every stage is checked: ``batches`` seeded random batches besides the example inputs, the
    caller's own ``inputs``, tolerance overrides, and when to ``localize`` a failing stage's first
    diverging node (auto: graphs of moderate size | always | never)."""

    batches: int = 3
    inputs: tuple[InputSet, ...] = ()
    atol: float | None = None
    rtol: float | None = None
    localize: str = "auto"
