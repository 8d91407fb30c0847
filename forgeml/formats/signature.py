"""``signature.json`` read back as a contract: the inputs a package's artifacts accept. Every runner
forgeml opens from a package directory checks the inputs it is called with against it, so a caller
who sends the wrong name, dtype or rank hears it in one line naming the file and the input, not as a
runtime's own error from deep inside onnxruntime, TFLite or llama.cpp. (The writer is
``report/signature.py``; this reader is untrusted-file safe: bounded size and depth, InputError.)"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forgeml.errors import InputError

FILENAME = "signature.json"
_MAX_BYTES = 16 << 20


@dataclass(frozen=True)
class InputContract:
    name: str
    dtype: str
    shape: tuple  # int: a fixed dim; str: a named dynamic dim; None: unknown


@dataclass(frozen=True)
class Contract:
    """The inputs a package promises to take, and the file that says so."""

    inputs: tuple[InputContract, ...]
    source: Path
    outputs: tuple[str, ...] = ()  # output names, in order

    def check(self, inputs: dict, artifact: Path | str) -> None:
        """Raise one InputError line for a missing or unknown input name, or a wrong dtype or rank."""
        name = Path(artifact).name
        expected = {t.name for t in self.inputs}
        unknown = sorted(set(inputs) - expected)
        if unknown:
            raise InputError(f"{name}: unknown input {unknown[0]!r}; {self.source.name} names the inputs "
                             f"{sorted(expected)}")
        for t in self.inputs:
            if t.name not in inputs:
                raise InputError(f"{name}: input {t.name!r} is missing ({self.source.name}: {_spec(t)})")
            value = inputs[t.name]
            dtype = value.dtype.name if hasattr(value, "dtype") else np.asarray(value).dtype.name
            if dtype != t.dtype:
                raise InputError(f"{name}: input {t.name!r} is {dtype}, expected {t.dtype} ({self.source.name}: "
                                 f"{_spec(t)})")
            rank = np.ndim(value)
            if t.shape and rank != len(t.shape):  # [] is also how an unknown rank is written: not checked
                raise InputError(f"{name}: input {t.name!r} has rank {rank} (shape {list(np.shape(value))}), "
                                 f"expected rank {len(t.shape)} ({self.source.name}: {_spec(t)})")


def _spec(t: InputContract) -> str:
    dims = "x".join("?" if d is None else str(d) for d in t.shape)
    return f"{t.name}:{dims}:{t.dtype}"


def read_contract(path: Path) -> Contract:
    """The inputs a ``signature.json`` names; InputError on a file that is not one."""
    from forgeml.errors import require_file
    from forgeml.formats.jsontext import loads

    require_file(path)
    try:
        if path.stat().st_size > _MAX_BYTES:
            raise ValueError(f"over {_MAX_BYTES >> 20} MiB")
        record = loads(path.read_bytes())
        inputs = tuple(InputContract(str(t["name"]), str(t["dtype"]),
                                     tuple(d if d is None or isinstance(d, (int, str)) else _bad(d)
                                           for d in t["shape"]))
                       for t in record["inputs"])
        outputs = tuple(str(t["name"]) for t in record["outputs"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a readable forgeml signature.json ({type(e).__name__}: {e})") from e
    return Contract(inputs, path, outputs)


def _bad(dim):
    raise ValueError(f"dim {dim!r} is neither a number, a name nor null")


def contract_beside(package: Path) -> Contract | None:
    """The contract in ``package`` (a directory), or None when it holds no signature.json."""
    path = Path(package) / FILENAME
    return read_contract(path) if path.exists() else None
