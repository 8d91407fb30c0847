"""``config.pbtxt`` from a signature, and reading it back: the contract Triton serves the model by.

Written by hand (text format is stable and tiny) so the target works without tritonclient; when
tritonclient is installed the text is parsed with Triton's own ``ModelConfig`` schema, which rejects
any field or enum this module gets wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from forgeml.errors import TargetError

# numpy dtype name -> Triton's DataType enum (model_config.proto)
TRITON_TYPES = {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
    "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64",
    "bfloat16": "TYPE_BF16", "str": "TYPE_STRING", "object": "TYPE_STRING", "string": "TYPE_STRING",
}
# onnxruntime's type strings -> the same enum, for checking a session against the config
ORT_TYPES = {f"tensor({k})": v for k, v in {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
    "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float": "TYPE_FP32", "double": "TYPE_FP64",
    "bfloat16": "TYPE_BF16", "string": "TYPE_STRING"}.items()}


@dataclass(frozen=True)
class TensorConfig:
    name: str
    data_type: str  # TYPE_*
    dims: tuple[int, ...]  # -1: variable; without the batch dim when max_batch_size > 0


@dataclass(frozen=True)
class ModelConfig:
    name: str
    max_batch_size: int  # 0: the model takes whole tensors (no batch dim managed by Triton)
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    platform: str = "onnxruntime_onnx"

    @property
    def dynamic_batching(self) -> bool:
        return self.max_batch_size > 0


def batch_is_dynamic(signature) -> bool:
    """Triton may batch only when every input and output has a symbolic first dim."""
    specs = [*signature.inputs, *signature.outputs]
    return bool(specs) and all(s.shape and not isinstance(s.shape[0], int) for s in specs)


def from_signature(signature, name: str, max_batch_size: int) -> ModelConfig:
    batched = batch_is_dynamic(signature)

    def tensor(spec) -> TensorConfig:
        if spec.dtype not in TRITON_TYPES:
            raise TargetError(f"triton: {spec.name}: dtype {spec.dtype} has no Triton data type")
        dims = spec.shape[1:] if batched else spec.shape
        return TensorConfig(spec.name, TRITON_TYPES[spec.dtype],
                            tuple(d if isinstance(d, int) else -1 for d in dims))

    return ModelConfig(name, max_batch_size if batched else 0,
                       tuple(tensor(s) for s in signature.inputs), tuple(tensor(s) for s in signature.outputs))


def render(cfg: ModelConfig) -> str:
    def block(kind: str, tensors) -> list[str]:
        lines = [f"{kind} ["]
        for i, t in enumerate(tensors):
            dims = ", ".join(str(d) for d in t.dims)
            sep = "," if i < len(tensors) - 1 else ""
            lines += ["  {", f"    name: {_quote(t.name)}", f"    data_type: {t.data_type}",
                      f"    dims: [ {dims} ]", "  }" + sep]
        return lines + ["]"]

    lines = [f"name: {_quote(cfg.name)}", f'platform: "{cfg.platform}"', f"max_batch_size: {cfg.max_batch_size}",
             *block("input", cfg.inputs), *block("output", cfg.outputs)]
    if cfg.dynamic_batching:
        lines.append("dynamic_batching { }")
    return "\n".join(lines) + "\n"


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def validate(text: str) -> ModelConfig | None:
    """Parse with Triton's own schema (tritonclient); None when tritonclient is not installed."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        return None
    try:
        msg = text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        raise TargetError(f"triton: config.pbtxt does not parse with Triton's model-config schema: {e}") from e

    def tensors(items) -> tuple[TensorConfig, ...]:
        return tuple(TensorConfig(t.name, model_config_pb2.DataType.Name(t.data_type), tuple(t.dims)) for t in items)

    return ModelConfig(msg.name, msg.max_batch_size, tensors(msg.input), tensors(msg.output), msg.platform)


_TENSOR = re.compile(r'\{\s*name:\s*"((?:[^"\\]|\\.)*)"\s*data_type:\s*(\w+)\s*dims:\s*\[([^\]]*)\]\s*\}')


def parse(text: str) -> ModelConfig:
    """Read back what ``render`` writes: Triton's schema when installed, else this module's own subset."""
    cfg = validate(text)
    return cfg if cfg is not None else parse_subset(text)


def parse_subset(text: str) -> ModelConfig:
    """The fields ``render`` writes, read without tritonclient."""
    name = re.search(r'^name:\s*"((?:[^"\\]|\\.)*)"', text, re.M)
    mbs = re.search(r"^max_batch_size:\s*(\d+)", text, re.M)
    platform = re.search(r'^platform:\s*"([^"]*)"', text, re.M)
    parts = re.split(r"^output\s*\[", text, maxsplit=1, flags=re.M)
    if not (name and mbs and platform) or len(parts) != 2:
        raise TargetError("triton: config.pbtxt is not in the form forgeml writes (name, platform, "
                          "max_batch_size, input, output)")

    def tensors(s: str) -> tuple[TensorConfig, ...]:
        return tuple(TensorConfig(re.sub(r"\\(.)", r"\1", n), dt, tuple(int(d) for d in dims.replace(",", " ").split()))
                     for n, dt, dims in _TENSOR.findall(s))

    return ModelConfig(re.sub(r"\\(.)", r"\1", name.group(1)), int(mbs.group(1)), tensors(parts[0]),
                       tensors(parts[1]), platform.group(1))


def check_session(cfg: ModelConfig, session, where: str) -> None:
    """The config's names, data types and dims against what an onnxruntime session takes: one line on
    the first mismatch."""
    for kind, declared, actual in (("input", cfg.inputs, session.get_inputs()),
                                   ("output", cfg.outputs, session.get_outputs())):
        by_name = {a.name: a for a in actual}
        if sorted(by_name) != sorted(t.name for t in declared):
            raise TargetError(f"triton: {where}: config {kind}s {[t.name for t in declared]} but the model's are "
                              f"{list(by_name)}")
        for t in declared:
            a = by_name[t.name]
            if ORT_TYPES.get(a.type) != t.data_type:
                raise TargetError(f"triton: {where}: {kind} {t.name!r} declared {t.data_type}, the model takes {a.type}")
            dims = ((-1,) if cfg.max_batch_size > 0 else ()) + t.dims
            shape = tuple(d if isinstance(d, int) else -1 for d in a.shape)
            if len(dims) != len(shape) or any(d != s and d != -1 and s != -1 for d, s in zip(dims, shape)):
                raise TargetError(f"triton: {where}: {kind} {t.name!r} declared dims {list(dims)} "
                                  f"(batch included), the model's are {list(shape)}")
            if cfg.max_batch_size > 0 and shape[0] != -1:
                raise TargetError(f"triton: {where}: {kind} {t.name!r}: max_batch_size > 0 but the model's first "
                                  f"dim is fixed at {shape[0]}")
