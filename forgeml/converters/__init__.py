"""Converters: import a source model into ONNX IR, and keep a runner for the *original* model.

``CONVERTERS`` is the one table of converters; ``forgeml.pipeline.sources`` picks one for what the user named.
A converter module imports its framework lazily, inside its functions.
"""

from __future__ import annotations

from forgeml.converters.base import Converter, ImportOptions  # noqa: F401  (the contract, re-exported)
from forgeml.ir import ConvertResult, SourceWeights  # noqa: F401  (the converters' result types)


def _table() -> dict[str, Converter]:
    from forgeml.converters.onnx import OnnxConverter
    from forgeml.converters.hf import HFConverter
    from forgeml.converters.hf_seq2seq import HFSeq2SeqConverter
    from forgeml.converters.sklearn import SklearnConverter
    from forgeml.converters.tensorflow import TensorflowConverter
    from forgeml.converters.torch import TorchConverter

    # hf and hf-seq2seq before torch: a transformers model is also a torch module, and in-memory models go to
    # the first taker.
    return {c.name: c for c in (HFConverter(), HFSeq2SeqConverter(), TorchConverter(), OnnxConverter(), TensorflowConverter(),
                                SklearnConverter())}


CONVERTERS: dict[str, Converter] = _table()
