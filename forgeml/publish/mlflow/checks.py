"""What can be checked before any slow work: the options against the run's targets, and the extra."""

from __future__ import annotations

from typing import Sequence

from forgeml.errors import InputError, require
from forgeml.options import MlflowOptions


def loadable(target_name: str) -> bool:
    """Whether a file of this target loads back on its own (``open`` with an empty context): not a
    tensorrt engine (no ``open``), nor safetensors weights (they run inside their source model)."""
    from forgeml.targets import TARGETS

    target = TARGETS.get(target_name)
    return target is not None and hasattr(target, "open") and getattr(target, "opens_alone", True)


def check_options(options: MlflowOptions, targets: Sequence[str] = ()) -> None:
    """Before any slow work: the options make sense for ``targets`` and the ``mlflow`` extra is installed."""
    if options.alias and not options.register:
        raise InputError("`mlflow.alias` names an alias of a registered model version; give `mlflow.register` too")
    for field, value in (("register", options.register), ("alias", options.alias)):
        if value is not None and not value.strip():
            raise InputError(f"`mlflow.{field}` is empty")
    if options.register and targets and not any(loadable(t) for t in targets):
        raise InputError(f"`mlflow.register` {options.register}: none of the `targets` ({', '.join(targets)}) "
                         "loads as an MLflow model on its own; add onnx")
    require("mlflow", "mlflow")
