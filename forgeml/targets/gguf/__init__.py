"""gguf: llama.cpp-ready files for decoder LLMs (llama, mistral, qwen2, gpt2), proven in llama.cpp itself."""

from forgeml.targets.gguf.target import GgufTarget, PRECISION, write_checkpoint  # noqa: F401
