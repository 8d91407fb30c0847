"""onnxruntime-genai as a decoder: greedy generation through its own Model and Generator.

The real client of a KV-cache decoder export: it reads ``genai_config.json`` beside the model, owns
the cache (feeding ``present`` back as ``past``), the attention mask and the positions. Token ids go
in directly (``append_tokens``), so what is compared is the model and its config, not a tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forgeml.errors import TargetError, first_line


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime_genai") is not None


def version() -> str:
    from importlib.metadata import version as v

    return f"onnxruntime-genai {v('onnxruntime-genai')}"


def genai_decode(model_dir: Path):
    """A ``Decode`` (prompt ids, n) -> (new ids, per-step logits) over ``onnxruntime_genai.Model(model_dir)``."""
    import onnxruntime_genai as og

    try:
        model = og.Model(str(model_dir))
    except Exception as e:  # genai raises RuntimeError with its own message
        raise TargetError(f"onnxruntime-genai could not load {model_dir}: {first_line(e)}") from e

    def decode(prompt: list[int], n: int):
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=False, max_length=len(prompt) + n, num_beams=1)
        gen = og.Generator(model, params)
        gen.append_tokens(np.asarray([prompt], dtype=np.int32))
        steps = []
        while not gen.is_done() and len(steps) < n:
            steps.append(np.asarray(gen.get_logits(), np.float32).reshape(-1)[-_vocab(model_dir):])
            gen.generate_next_token()
        tokens = [int(t) for t in gen.get_sequence(0)[len(prompt):]]
        if len(steps) == len(tokens) + 1:
            # genai stops at the end-of-sequence token without appending it; transformers keeps it.
            # Greedy search took that step's argmax: put it back so both continuations read alike.
            tokens.append(int(steps[-1].argmax()))
        return tokens, (np.stack(steps) if steps else np.zeros((0, 1), np.float32))[:len(tokens)]

    return decode


def _vocab(model_dir: Path) -> int:
    import json

    return int(json.loads((Path(model_dir) / "genai_config.json").read_text())["model"]["vocab_size"])
