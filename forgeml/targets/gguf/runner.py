"""llama.cpp (through llama-cpp-python) as a runner: next-token logits of a GGUF file on fixed token ids.

Each row of ``input_ids`` is evaluated from an empty context and the logits of every position are
returned, shaped like the transformers model's ``(batch, tokens, vocab)``. The KV cache is f32
(``type_k = type_v = 0``): llama.cpp's default f16 cache alone costs ~1e-2 at logit scale 7-9, which
would hide what the file itself does.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from forgeml.errors import TargetError, first_line, require
from forgeml.runtime import InputSet

GGML_TYPE_F32 = 0


def llama_cpp_version() -> str:
    llama_cpp = require("llama_cpp", "gguf")
    return f"llama-cpp-python {llama_cpp.__version__}"


@contextlib.contextmanager
def _quiet_stderr():
    """llama.cpp prints loader chatter on fd 2 even with verbose=False; keep it off the CLI's output."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


def load(path: Path, *, n_ctx: int, vocab_only: bool = False, threads: int | None = None):
    llama_cpp = require("llama_cpp", "gguf")
    threads = threads or max(1, min(os.cpu_count() or 1, 8))
    try:
        with _quiet_stderr():
            return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                                   logits_all=True, vocab_only=vocab_only, n_threads=threads,
                                   n_threads_batch=threads, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32,
                                   n_gpu_layers=0, verbose=False)
    except (ValueError, RuntimeError, OSError) as e:
        raise TargetError(f"llama.cpp could not load {path.name}: {first_line(e)}") from e


class LlamaRunner:
    """llama.cpp over a GGUF file: token ids in, logits for every position out. ``llm`` is the loaded
    model, for tokenizer checks and benchmarks."""

    def __init__(self, llm, n_ctx: int, input_name: str, output_name: str):
        self.llm, self.n_ctx, self.input_name, self.output_name = llm, n_ctx, input_name, output_name
        self.n_vocab = llm.n_vocab()

    def __call__(self, inputs: InputSet) -> dict[str, np.ndarray]:
        ids = np.asarray(inputs[self.input_name])
        if ids.ndim != 2:
            raise TargetError(f"llama.cpp runner: {self.input_name} must be (batch, tokens), got shape {ids.shape}")
        if ids.shape[1] > self.n_ctx:
            raise TargetError(f"llama.cpp runner: {ids.shape[1]} tokens exceed the context of {self.n_ctx}")
        out = np.empty((*ids.shape, self.n_vocab), dtype=np.float32)
        for b, row in enumerate(ids):
            self.llm.reset()
            with _quiet_stderr():
                self.llm.eval([int(t) for t in row])
            out[b] = self.llm.scores[: ids.shape[1]]
        return {self.output_name: out}

    def greedy_decode(self, eos):
        """Greedy decoding in llama.cpp's own loop (its KV cache): the prompt, then one token per step;
        the generation check compares the tokens and each step's logits with the source's ``generate``."""
        from forgeml.parity.generation import is_eos

        def decode(prompt: list[int], n: int) -> tuple[list[int], np.ndarray]:
            if len(prompt) + n > self.n_ctx:
                raise TargetError(f"llama.cpp runner: {len(prompt)} prompt + {n} generated tokens exceed the "
                                  f"context of {self.n_ctx}")
            self.llm.reset()
            feed, tokens, steps = [int(t) for t in prompt], [], []
            for _ in range(n):
                with _quiet_stderr():
                    self.llm.eval(feed)
                last = np.array(self.llm.scores[self.llm.n_tokens - 1], dtype=np.float32)
                steps.append(last)
                token = int(last.argmax())
                tokens.append(token)
                feed = [token]
                if is_eos(token, eos):
                    break
            return tokens, np.stack(steps) if steps else np.zeros((0, self.n_vocab), np.float32)

        return decode


def llama_runner(path: Path, *, n_ctx: int, input_name: str = "input_ids", output_name: str = "logits") -> LlamaRunner:
    return LlamaRunner(load(path, n_ctx=n_ctx), n_ctx, input_name, output_name)


def tokenize(path: Path, texts: list[str], *, add_bos: bool, special: bool = False) -> list[list[int]]:
    """llama.cpp's tokenization of ``texts`` with the file's own vocabulary (loaded vocab-only)."""
    llm = load(path, n_ctx=64, vocab_only=True)
    return [llm.tokenize(t.encode("utf-8"), add_bos=add_bos, special=special) for t in texts]
