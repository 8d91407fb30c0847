"""forgeml's signature record (signature.json) as MLflow's ``ModelSignature``: tensor specs with the
same names and dtypes, every dim that is not a fixed number as -1 (MLflow's "any size")."""

from __future__ import annotations

import numpy as np


def model_signature(record: dict):
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    def spec(t: dict) -> TensorSpec:
        dtype = np.dtype(object) if t["dtype"] in ("string", "str", "object") else np.dtype(t["dtype"])
        shape = tuple(d if isinstance(d, int) and not isinstance(d, bool) else -1 for d in t["shape"])
        return TensorSpec(dtype, shape, t["name"])

    return ModelSignature(Schema([spec(t) for t in record["inputs"]]), Schema([spec(t) for t in record["outputs"]]))
