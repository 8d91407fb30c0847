"""forgeml: convert a trained model into the artifacts runtimes load, and prove every step.

    import forgeml
    result = forgeml.convert(model, example_inputs, targets=["onnx", "safetensors"], out_dir="export/")
    result.ok, result.artifacts["onnx"].path, print(result.parity.table())

The functions live in ``forgeml.api``; heavy frameworks are imported only when a conversion needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forgeml.errors import (  # noqa: F401  (public API)
    ConversionError,
    ForgeError,
    InputError,
    ParityError,
    PassError,
    PublishError,
    TargetError,
)
from forgeml.version import __version__  # noqa: F401

_API = ("convert", "parity", "reproduce", "inspect", "scan", "publish_mlflow", "ImportOptions", "ParityOptions",
        "QuantizeOptions", "MlflowOptions")

if TYPE_CHECKING:
    from forgeml.api import (  # noqa: F401
        ImportOptions,
        MlflowOptions,
        ParityOptions,
        QuantizeOptions,
        convert,
        inspect,
        parity,
        publish_mlflow,
        reproduce,
        scan,
    )


def __getattr__(name: str):
    """The API is loaded on first use, so ``import forgeml`` (and ``forgeml --help``) imports nothing heavy."""
    if name in _API:
        from forgeml import api

        return getattr(api, name)
    raise AttributeError(f"module 'forgeml' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
