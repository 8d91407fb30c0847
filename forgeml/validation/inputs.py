"""Inputs for parity: the user's examples checked against the signature, plus seeded random batches."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from forgeml.errors import InputError
from forgeml.ir import Signature, TensorSpec
from forgeml.validation import InputSet

_DTYPES = {"float32", "float16", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool"}


def parse_input_spec(text: str) -> TensorSpec:
    """``name:1x3x224x224:float32`` (dims may be names, e.g. ``batch``; dtype defaults to float32)."""
    m = re.fullmatch(r"([^:]+):([^:]*)(?::([a-z0-9]+))?", text.strip())
    if not m:
        raise InputError(f"--input {text!r}: expected name:DIMS[:dtype], e.g. x:1x3x224x224:float32")
    name, dims, dtype = m.group(1), m.group(2), m.group(3) or "float32"
    if dtype not in _DTYPES:
        raise InputError(f"--input {text!r}: unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    shape = tuple(int(d) if d.isdigit() else d for d in dims.split("x")) if dims else ()
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
            if isinstance(want, int) and got != want:
                raise InputError(f"{what}: input {spec.name!r} has shape {tuple(a.shape)} but the model expects "
                                 f"{_shape_text(spec.shape)}")


def _shape_text(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def read_npz(path: str | Path, flag: str = "--inputs") -> InputSet:
    """Arrays from an .npz by name, never unpickling; not yet checked against a signature."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{flag} {p}: no such file")
    try:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"{flag} {p}: not a readable .npz file ({e})") from e


def example_from_spec(spec: TensorSpec, rng: np.random.Generator, dynamic: int = 2) -> np.ndarray:
    """A seeded example for an input known only by its spec (symbolic dims become ``dynamic``)."""
    shape = [d if isinstance(d, int) else dynamic for d in spec.shape]
    if spec.dtype.startswith(("float", "bfloat")):
        return rng.normal(size=shape).astype(spec.dtype)
    if spec.dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    return rng.integers(0, 2, size=shape).astype(spec.dtype)


def load_calibration(path: str | Path) -> list[InputSet]:
    """--calib data.npz: arrays keyed by input name, first axis = samples; one batch of 1 per sample.

    Checked against the model's signature by the pipeline once the model is imported.
    """
    p = Path(path)
    arrays = read_npz(p, "--calib")
    if not arrays:
        raise InputError(f"--calib {p}: holds no arrays")
    counts = {k: (a.shape[0] if a.ndim else 0) for k, a in arrays.items()}
    if len(set(counts.values())) != 1 or 0 in counts.values():
        raise InputError(f"--calib {p}: every array needs the same number of samples on axis 0, got {counts}")
    n = next(iter(counts.values()))
    return [{k: a[i:i + 1] for k, a in arrays.items()} for i in range(n)]


def random_like(example: InputSet, signature: Signature, seed: int, batch: int | None = None) -> InputSet:
    """A seeded batch shaped like ``example`` (batch axis resized when ``batch`` is given).

    Floats are drawn with the example's mean and spread; integers (token ids, indices) uniformly
    from the range the example uses, so ids stay valid for embedding tables.
    """
    rng = np.random.default_rng(seed)
    out: InputSet = {}
    for spec in signature.inputs:
        ex = example[spec.name]
        shape = list(ex.shape)
        if batch is not None and shape and spec.shape and not isinstance(spec.shape[0], int):
            shape[0] = batch
        if ex.dtype.kind == "f":
            mu = float(ex.mean()) if ex.size else 0.0
            sd = float(ex.std()) if ex.size > 1 else 1.0
            a = rng.normal(mu, sd if sd > 0 else 1.0, size=shape)
        elif ex.dtype.kind in "iu":
            lo, hi = (int(ex.min()), int(ex.max())) if ex.size else (0, 1)
            a = rng.integers(lo, hi + 1, size=shape)
        elif ex.dtype.kind == "b":
            a = rng.integers(0, 2, size=shape).astype(bool)
        else:
            a = ex.copy()
        out[spec.name] = np.asarray(a).astype(ex.dtype)
    return out


def parity_inputs(example: InputSet, signature: Signature, *, batches: int, seed: int,
                  dynamic_batch: bool, user: list[InputSet] = ()) -> list[InputSet]:
    """The input sets every stage is checked on: the example, seeded random batches, the user's own.

    With a dynamic batch axis the random batches vary its size, so a stage that baked the example's
    batch size into the graph fails parity instead of passing by accident.
    """
    sets = [example]
    first = next(iter(example.values()))
    base = first.shape[0] if first.ndim else None
    for i in range(batches):
        batch = None
        if dynamic_batch and base is not None:
            batch = base + 1 + i
        sets.append(random_like(example, signature, seed + i, batch))
    sets.extend(user)
    return sets
