"""The pyfunc wrapper for artifacts MLflow has no flavor for (tflite, gguf, torch-aoti, a Triton
repository): MLflow stores the artifact and signature.json side by side under the model's
``artifacts/``, and loading opens the artifact through its forgeml target's ``open`` — the runtime that
proved it (TFLite interpreter, llama.cpp, onnxruntime on the repository's model) and the
signature.json check of every call. Loaded by MLflow from ``model_code.py`` (a model from code: no
pickled class)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from mlflow.pyfunc import PythonModel


WHAT = "forgeml_model.json"  # beside the artifact: {"target": forgeml target name, "file": path under artifacts/}


# MLflow warns, at class creation, that an untyped predict() gets no type-hint validation: the
# signature (ModelSignature) validates the inputs here, and the artifact's signature.json again.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)

    class ArtifactModel(PythonModel):
        """Opens the artifact ``forgeml_model.json`` names (``model.tflite``,
        ``model_repository/cnn/config.pbtxt`` …) with that forgeml target."""

        def load_context(self, context):
            import json

            from forgeml.targets import TARGETS
            from forgeml.targets.base import OpenContext

            config = json.loads(Path(context.artifacts["forgeml"]).read_text())
            root = Path(context.artifacts["signature"]).parent
            target = TARGETS[config["target"]]
            self.opened = target.open(root / config["file"], OpenContext())
            self.input_names = [t["name"] for t in _inputs(root)]

        def predict(self, context, model_input, params=None):
            """A dict of arrays by input name (or one array / a DataFrame for a one-input model) in, a dict of
            arrays by output name out."""
            if isinstance(model_input, dict):
                inputs = {k: np.asarray(v) for k, v in model_input.items()}
            elif isinstance(model_input, np.ndarray) and len(self.input_names) == 1:
                inputs = {self.input_names[0]: model_input}
            elif hasattr(model_input, "columns"):  # a pandas DataFrame: one column per input
                inputs = {c: np.stack(model_input[c].to_numpy()) for c in model_input.columns}
            else:
                raise TypeError(f"inputs must be a dict of arrays by name {self.input_names}, got "
                                f"{type(model_input).__name__}")
            return self.opened.runner(inputs)


def _inputs(root: Path) -> list[dict]:
    import json

    return json.loads((root / "signature.json").read_text())["inputs"]
