"""Inputs for parity: the user's examples checked against the signature, plus seeded random batches."""

from __future__ import annotations

import math
import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

from forgeml.errors import InputError, require_file
from forgeml.ir import Signature, TensorSpec
from forgeml.runtime import InputSet

_DTYPES = {"float32", "float16", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool"}


def parse_input_spec(text: str) -> TensorSpec:
    """``name:1x3x224x224:float32`` (dims may be names, e.g. ``batch``; dtype defaults to float32)."""
    m = re.fullmatch(r"([^:]+):([^:]*)(?::([a-z0-9]+))?", text.strip())
    if not m:
        raise InputError(f"`options.input_specs` {text!r}: expected name:DIMS[:dtype], e.g. x:1x3x224x224:float32")
    name, dims, dtype = m.group(1), m.group(2), m.group(3) or "float32"
    if dtype not in _DTYPES:
        raise InputError(f"`options.input_specs` {text!r}: unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    parts = dims.split("x") if dims else []
    bad = [d for d in parts if not (d.isdigit() or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", d))]
    if bad:
        raise InputError(f"`options.input_specs` {text!r}: dimension {bad[0]!r} is neither a size nor a name like 'batch'")
    shape = tuple(int(d) if d.isdigit() else d for d in parts)
    return TensorSpec(name, shape, dtype)


def check_inputs(inputs: InputSet, signature: Signature, what: str) -> None:
    """Raise one clear InputError when ``inputs`` do not fit the model's inputs."""
    expected = signature.input_names
    missing = [n for n in expected if n not in inputs]
    extra = [n for n in inputs if n not in expected]
    if missing or extra:
        raise InputError(f"{what}: the model's inputs are {expected}, got {sorted(inputs)}"
                         + (f" (missing {missing})" if missing else "") + (f" (unexpected {extra})" if extra else ""))
    for spec in signature.inputs:
        a = inputs[spec.name]
        if str(a.dtype) != spec.dtype:
            raise InputError(f"{what}: input {spec.name!r} has dtype {a.dtype} but the model expects {spec.dtype}")
        if spec.shape and len(a.shape) != len(spec.shape):
            raise InputError(f"{what}: input {spec.name!r} has shape {tuple(a.shape)} but the model expects "
                             f"{_shape_text(spec.shape)}")
        for got, want in zip(a.shape, spec.shape):
            if _fixed(want) and got != want:
                raise InputError(f"{what}: input {spec.name!r} has shape {tuple(a.shape)} but the model expects "
                                 f"{_shape_text(spec.shape)}")


def _fixed(dim) -> bool:
    """A fixed size; ``-1`` (paddle2onnx and older exporters) means dynamic, like a name or None."""
    return isinstance(dim, int) and dim >= 0


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(d) if _fixed(d) else "?" if d is None or isinstance(d, int) else str(d)
                           for d in shape) + ")"


def read_npz(path: str | Path, flag: str = "`parity.inputs`") -> InputSet:
    """Arrays from an .npz by name, never unpickling; not yet checked against a signature."""
    p = Path(path)
    require_file(p, what=flag)
    try:
        _check_npz_sizes(p)
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except InputError as e:
        raise InputError(f"{flag} {p}: {e}") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, KeyError,
            UnicodeDecodeError, struct.error, SyntaxError) as e:
        raise InputError(f"{flag} {p}: not a readable .npz file ({type(e).__name__}: {str(e)[:200]})") from e


def _check_npz_sizes(p: Path) -> None:
    """Every member's declared array fits the bytes the member holds, and no member inflates past the
    bound the pickle scanner uses (``ScanLimits.inflated_bytes``): numpy allocates the array its header
    declares before reading it."""
    from forgeml.security.pickle_scan import ScanLimits

    limits = ScanLimits()
    with zipfile.ZipFile(p) as z:
        for info in z.infolist():
            cap = limits.inflated_bytes(info.compress_size)
            if info.file_size > cap:
                raise InputError(f"member {info.filename!r} inflates to {info.file_size} bytes from "
                                 f"{info.compress_size} (a zip bomb?); refused")
            if info.flag_bits & 0x1:  # zipfile would raise RuntimeError asking for a password
                raise InputError(f"member {info.filename!r} is encrypted; numpy cannot read it")
            if not info.filename.endswith(".npy"):
                continue
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
                nbytes = math.prod(shape) * dtype.itemsize
                if nbytes > info.file_size:
                    raise InputError(f"member {info.filename!r} declares a {shape} {dtype} array ({nbytes} "
                                     f"bytes) but holds {info.file_size} bytes (corrupt or truncated)")


def example_from_spec(spec: TensorSpec, rng: np.random.Generator, dynamic: int = 2, *,
                      dims: Mapping[int, int] | None = None, int_high: int = 2) -> np.ndarray:
    """A seeded example for an input known only by its spec: the one rule every synthetic input follows.

    Symbolic dims become ``dims[axis]`` where given, else ``dynamic``; floats are standard normal,
    bools 0/1, integers drawn from [0, ``int_high``) (small, so any embedding table takes them).
    """
    dims = dims or {}
    shape = [d if _fixed(d) else dims.get(i, dynamic) for i, d in enumerate(spec.shape)]
    check_example_size(spec.name, shape, spec.dtype)
    if spec.dtype.startswith(("float", "bfloat")):
        return rng.normal(size=shape).astype(spec.dtype)
    if spec.dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    return rng.integers(0, int_high, size=shape).astype(spec.dtype)


MAX_EXAMPLE_BYTES = 1 << 30  # one generated input; a model asking more is corrupt or needs real inputs


def check_example_size(name: str, shape, dtype: str) -> None:
    """``InputError`` before allocating an example larger than ``MAX_EXAMPLE_BYTES`` (a dimension of
    2**40 in a hostile or corrupt model would otherwise ask numpy for terabytes)."""
    if any(int(d) < 0 for d in shape):
        raise InputError(f"input {name!r}: negative dimension in shape {_shape_text(shape)}")
    item = 8 if dtype.startswith(("float", "bfloat")) else np.dtype(dtype if dtype != "bool" else "int64").itemsize
    nbytes = math.prod(int(d) for d in shape) * item
    if nbytes > MAX_EXAMPLE_BYTES:
        raise InputError(f"input {name!r}: shape {_shape_text(shape)} needs {nbytes / 2**30:.3g} GiB for one generated "
                         f"example (the bound is {MAX_EXAMPLE_BYTES >> 30} GiB); fix the model's input shape, or give "
                         "real inputs with `parity.inputs`")


def load_calibration(path: str | Path) -> list[InputSet]:
    """`quantize.calibration` data.npz: arrays keyed by input name, first axis = samples; one batch of 1 per sample.

    Checked against the model's signature by the pipeline once the model is imported.
    """
    p = Path(path)
    arrays = read_npz(p, "`quantize.calibration`")
    if not arrays:
        raise InputError(f"`quantize.calibration` {p}: holds no arrays; save one array per model input, keyed by input name "
                         "(np.savez(path, **{name: samples}))")
    for k, a in arrays.items():
        if a.ndim == 0:
            raise InputError(f"`quantize.calibration` {p}: input {k!r} is a scalar; it needs a first axis of samples")
        if a.shape[0] == 0:
            raise InputError(f"`quantize.calibration` {p}: input {k!r} is empty (0 samples on axis 0)")
        _check_finite(a, f"`quantize.calibration` {p}: input {k!r}")
    counts = {k: a.shape[0] for k, a in arrays.items()}
    if len(set(counts.values())) != 1:
        raise InputError(f"`quantize.calibration` {p}: every array needs the same number of samples on axis 0, got {counts}")
    n = next(iter(counts.values()))
    return [{k: a[i:i + 1] for k, a in arrays.items()} for i in range(n)]


def _check_finite(a: np.ndarray, what: str) -> None:
    if a.dtype.kind == "f":
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise InputError(f"{what} has {bad} NaN/inf value(s); calibration data must be finite")


def fit_calibration(batches, signature: Signature, what: str = "`quantize.calibration`") -> tuple[InputSet, ...]:
    """Check calibration batches against the model and regroup them to its batch size.

    Each given batch (a dict by input name, first axis = samples) must name every model input with
    the model's dtype and per-sample shape, be non-empty and finite; errors name the input. Samples
    are regrouped into batches of the model's fixed batch size (or kept as given when it is dynamic).
    """
    batches = list(batches or ())
    if not batches:
        return ()
    expected = signature.input_names
    samples: dict[str, list[np.ndarray]] = {n: [] for n in expected}
    for i, batch in enumerate(batches):
        if not isinstance(batch, dict):
            raise InputError(f"{what}: batch {i} is a {type(batch).__name__}; give dicts keyed by input name")
        missing = [n for n in expected if n not in batch]
        if missing:
            raise InputError(f"{what}: no data for model input {missing[0]!r} (the model's inputs are {expected}, "
                             f"the calibration data has {sorted(batch)})")
        extra = [n for n in batch if n not in expected]
        if extra:
            raise InputError(f"{what}: the model has no input named {extra[0]!r} (its inputs are {expected})")
        counts = set()
        for spec in signature.inputs:
            a = np.asarray(batch[spec.name])
            name = f"{what}: input {spec.name!r}"
            if str(a.dtype) != spec.dtype:
                raise InputError(f"{name} has dtype {a.dtype} but the model expects {spec.dtype} "
                                 f"(convert it with .astype('{spec.dtype}'))")
            if spec.shape and a.ndim != len(spec.shape):
                raise InputError(f"{name} has shape {tuple(a.shape)} but the model expects "
                                 f"{_shape_text(spec.shape)} (first axis = samples)")
            for got, want in list(zip(a.shape, spec.shape))[1:]:
                if isinstance(want, int) and got != want:
                    raise InputError(f"{name} has shape {tuple(a.shape)} but the model expects "
                                     f"{_shape_text(spec.shape)}")
            if a.ndim == 0 or a.shape[0] == 0:
                raise InputError(f"{name} is empty (0 samples)")
            _check_finite(a, name)
            counts.add(a.shape[0])
            samples[spec.name].append(a)
        if len(counts) != 1:
            raise InputError(f"{what}: batch {i} has different sample counts per input")
    stacked = {n: np.concatenate(v, axis=0) for n, v in samples.items()}
    total = next(iter(stacked.values())).shape[0]
    first = signature.inputs[0].shape[0] if signature.inputs and signature.inputs[0].shape else None
    if isinstance(first, int):
        if total < first:
            raise InputError(f"{what}: {total} sample(s) but the model takes a fixed batch of {first}; "
                             f"give at least {first}")
        return tuple({n: a[i:i + first] for n, a in stacked.items()} for i in range(0, total - first + 1, first))
    return tuple({n: np.asarray(b[n]) for n in expected} for b in batches)


def random_like(example: InputSet, signature: Signature, seed: int, batch: int | None = None) -> InputSet:
    """A seeded batch derived from ``example`` (batch axis resized when ``batch`` is given, by
    cycling the example's rows).

    Floats are drawn with the example's mean and spread, except a single float (a scalar or one
    element: a threshold, a ratio, a scale, a start value), which carries a value like an integer
    does and is kept (NonMaxSuppression's IoU threshold must stay in [0, 1], Dropout's ratio in
    [0, 1)). Integers and bools never take a value the example does not hold: an integer input may
    carry a value (a sample rate, an axis, a count, a shape) the model cannot take otherwise, so it
    is kept exactly as given; only an id-like tensor (2+ dims, 4+ distinct values: token ids,
    positions) is redrawn from the example's own values.
    """
    rng = np.random.default_rng(seed)
    out: InputSet = {}
    for spec in signature.inputs:
        ex = np.asarray(example[spec.name])
        if batch is not None and ex.ndim and spec.shape and not _fixed(spec.shape[0]) and ex.shape[0]:
            ex = np.take(ex, np.arange(batch) % ex.shape[0], axis=0)
        if ex.dtype.kind == "f" and ex.size > 1:
            finite = ex[np.isfinite(ex)]
            mu = float(finite.mean()) if finite.size else 0.0
            sd = float(finite.std()) if finite.size > 1 else 1.0
            out[spec.name] = rng.normal(mu, sd if sd > 0 else 1.0, size=ex.shape).astype(ex.dtype)
        elif ex.dtype.kind in "iu" and ex.ndim >= 2 and len(values := np.unique(ex)) >= 4:
            out[spec.name] = rng.choice(values, size=ex.shape).astype(ex.dtype)
        else:
            out[spec.name] = ex.copy()
    return out


def parity_inputs(example: InputSet, signature: Signature, *, batches: int, seed: int,
                  dynamic_batch: bool, user: list[InputSet] = ()) -> list[InputSet]:
    """The input sets every stage is checked on: the example, seeded random batches, the user's own.

    With a dynamic batch axis the random batches vary its size, so a stage that baked the example's
    batch size into the graph fails parity instead of passing by accident.
    """
    sets = [example]
    if not example:
        raise InputError("the model has no inputs; forgeml checks parity by running the source and each "
                         "stage on the same inputs, so it converts only models that take at least one")
    first = next(iter(example.values()))
    base = first.shape[0] if first.ndim else None
    for i in range(batches):
        batch = None
        if dynamic_batch and base is not None:
            batch = base + 1 + i
        sets.append(random_like(example, signature, seed + i, batch))
    sets.extend(user)
    return sets


HELD_OUT_SEED = 9000  # apart from the parity batches (seed + i) and the precision passes' own seeds (+1000..+7999)


def held_out_inputs(example: InputSet, signature: Signature, *, samples: int, seed: int) -> list[InputSet]:
    """Seeded batches like the example, holding at least ``samples`` samples, on seeds no pass draws from:
    lower-precision stages are judged on them besides the parity inputs. Their verdict rests on statistics
    (top-1 agreement, centered cosine) that four samples cannot estimate, and a precision pass chose what to
    keep in float on inputs of its own, so only inputs it never saw can say whether its result holds."""
    if samples <= 0 or not example:
        return []
    first = next(iter(example.values()))
    per = max(1, int(first.shape[0])) if getattr(first, "ndim", 0) else 1
    return [random_like(example, signature, seed + HELD_OUT_SEED + k) for k in range(-(-samples // per))]
