"""Readers of file kinds several layers share (safetensors headers, Hugging Face checkpoint dirs,
GGUF headers, TFLite metadata): every size read from a file is checked against the file, and no
framework is imported at module top."""
