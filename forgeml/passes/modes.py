"""``quantize.mode MODE`` → the passes that implement it, appended after the default passes.

    fp16         fp16
    int8         int8-dynamic   (weights int8, activations quantized at run time)
    int8-static  int8-static    (QDQ, calibrated; needs `quantize.calibration` or `quantize.synthetic_calibration`)
    int4         int4           (MatMul weights 4-bit, MatMulNBits)

``optimize=True`` puts the ``optimize`` pass (onnxscript's dynamo fusions, then onnxruntime's) before
int8/int4. It is off by default: with onnxruntime's fusions alone it made int8 slower on the zoo
transformers (transformer-base, 2 AVX-512 VNNI cores: int8 2.34x vs optimize+int8 2.01x over fp32), and
the onnxscript fusions (MultiHeadAttention with unpacked Q/K/V) have not yet been measured faster on a
quiet machine (``bench/bert.py`` compares both).

Both the CLI and ``forgeml.convert()`` call ``quantize_pipeline``, so a mode means the same passes
everywhere. Budgets default to the precision's tolerance profile (``forgeml.parity.tolerances``).
"""

from __future__ import annotations

from forgeml.errors import InputError
from forgeml.passes.base import ForgePass
from forgeml.passes.precision.base import BudgetConfig

MODES = ("fp16", "int8", "int8-static", "int4")
CALIBRATE_METHODS = ("minmax", "entropy", "percentile")


def quantize_pipeline(mode: str, *, has_calibration: bool = False, calib_synthetic: bool = False,
                      max_cosine_drop: float | None = None, min_top1: float | None = None,
                      optimize: bool = False, fallback: bool = True, targets: tuple[str, ...] = (),
                      min_centered_cosine: float | None = None, calibrate_method: str = "minmax") -> list[ForgePass]:
    """The passes for ``mode``. Refuses int8-static without calibration unless ``calib_synthetic``; int8-static
    is planned for the runtime among ``targets`` that is strictest about it (``precision.plan.runtime_for``)."""
    from forgeml.passes.precision.fp16 import Fp16Pass
    from forgeml.passes.optimize import OptimizePass
    from forgeml.passes.precision.quantize import Int4Pass, Int8DynamicPass, Int8StaticPass

    if mode not in MODES:
        raise InputError(f"`quantize.mode` {mode!r}: unknown mode; choose one of {', '.join(MODES)}")
    check_budget(max_cosine_drop, min_top1, min_centered_cosine)
    if calibrate_method not in CALIBRATE_METHODS:
        raise InputError(f"`quantize.calibrate_method` {calibrate_method!r}: choose one of {', '.join(CALIBRATE_METHODS)}")
    if calibrate_method != "minmax" and mode != "int8-static":
        raise InputError(f"`quantize.calibrate_method` applies to int8-static, not `quantize.mode` {mode}")
    budget = BudgetConfig(min_cosine=None if max_cosine_drop is None else 1.0 - max_cosine_drop,
                          min_centered_cosine=min_centered_cosine, min_top1=min_top1, fallback=fallback)
    if mode == "fp16":
        return [Fp16Pass(budget=budget)]
    if mode == "int8":
        return ([OptimizePass()] if optimize else []) + [Int8DynamicPass(budget=budget)]
    if mode == "int8-static":
        if not has_calibration and not calib_synthetic:
            raise InputError("`quantize.mode` int8-static needs calibration data: give `quantize.calibration` data.npz (arrays keyed "
                             "by input name, first axis = samples; in the API: calibration=[{name: array}, …]), "
                             "or `quantize.synthetic_calibration` to calibrate on random inputs (the report then flags the "
                             "result as not representative)")
        from forgeml.passes.precision.plan import runtime_for

        cfg = Int8StaticPass.Config(calibration="user" if has_calibration else "synthetic", budget=budget,
                                    runtime=runtime_for(targets), calibrate_method=calibrate_method)
        return [Int8StaticPass(cfg)]
    return ([OptimizePass()] if optimize else []) + [Int4Pass(budget=budget)]


def check_budget(max_cosine_drop: float | None, min_top1: float | None, min_centered_cosine: float | None = None) -> None:
    if min_centered_cosine is not None and not 0.0 < min_centered_cosine <= 1.0:
        raise InputError(f"`quantize.min_centered_cosine` {min_centered_cosine:g}: must be in (0, 1], e.g. 0.99")
    if max_cosine_drop is not None and not 0.0 <= max_cosine_drop < 1.0:
        raise InputError(f"`quantize.max_cosine_drop` {max_cosine_drop:g}: must be in [0, 1), e.g. 0.01")
    if min_top1 is not None and not 0.0 <= min_top1 <= 1.0:
        raise InputError(f"`quantize.min_top1` {min_top1:g}: must be in [0, 1], e.g. 0.98")
