"""The one model object that flows through the pipeline.

``IRModel`` is an ``onnx_ir.Model`` plus what the ONNX graph alone does not say: the source model's
input/output signature (names, shapes with symbolic dims, dtypes), where the model came from, and the
numeric precision the graph now computes in (which picks the parity tolerance profile).
Converters create it, passes replace it (never mutate it), targets consume it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, Union

import numpy as np

if TYPE_CHECKING:
    import onnx
    import onnx_ir

InputSet = dict[str, np.ndarray]


class Runner(Protocol):
    """Runs a model: input arrays by the source model's input names -> outputs by its output names.

    A plain function fits; runners that hold a runtime are small classes (``runtime.ort.OrtRunner``,
    the TFLite target's ``TFLiteRunner`` …) whose typed attributes (``session``, ``iomap``) callers
    read directly. Defined here, beside ``InputSet``, because every floor from converters up uses it;
    ``forgeml.runtime`` re-exports it with the runners."""

    def __call__(self, inputs: InputSet) -> dict[str, np.ndarray]: ...

Dim = Union[int, str, None]
"""A dimension: a fixed size, a symbolic name (``"batch"``), or unknown."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[Dim, ...]
    dtype: str  # numpy dtype name: "float32", "int64", …

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, d: dict) -> TensorSpec:
        return cls(d["name"], tuple(d["shape"]), d["dtype"])

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}:{dims or 'scalar'}:{self.dtype}"


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def to_json(self) -> dict:
        return {
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }

    @classmethod
    def from_json(cls, d: dict) -> Signature:
        return cls(
            tuple(TensorSpec.from_json(t) for t in d["inputs"]),
            tuple(TensorSpec.from_json(t) for t in d["outputs"]),
        )


@dataclass(frozen=True)
class Provenance:
    kind: str  # converter name: "torch", "onnx", …
    ref: str  # what the user named: a path, "zoo:cnn", "python:pkg.mod:fn", "<in-memory torch.nn.Module>"
    sha256: str  # of the source file, or of the source weights for in-memory models
    framework: str  # "torch 2.13.0"
    route: str = ""  # how it was imported, e.g. "dynamo" or "torchscript (fallback: …)"
    fallback: str = ""  # why the preferred route failed, when another one had to be taken

    def to_json(self) -> dict:
        d = {"kind": self.kind, "ref": self.ref, "sha256": self.sha256, "framework": self.framework}
        if self.route:
            d["route"] = self.route
        if self.fallback:
            d["fallback"] = self.fallback
        return d


@dataclass(frozen=True)
class IRModel:
    model: onnx_ir.Model
    signature: Signature
    provenance: Provenance
    precision: str = "fp32"

    def replace(self, **changes) -> IRModel:
        return dataclasses.replace(self, **changes)

    def to_proto(self) -> onnx.ModelProto:
        import onnx_ir

        return onnx_ir.serde.serialize_model(self.model)

    def stats(self) -> dict[str, int]:
        """Node count and size (weights plus graph structure): what every pass reports before and after."""
        weights = weight_bytes(self.model)
        graph_only, _ = hold_out(self.model, as_inputs=False, min_bytes=0)  # no weight is copied to count them
        return {"nodes": count_nodes(self.model), "bytes": weights + graph_only.ByteSize()}


def make_initializers_contiguous(model: onnx_ir.Model) -> list[str]:
    """Give every initializer a C-contiguous array, in place; returns the names that changed.

    Exporters hand over transposed weights as strided numpy views (the dynamo exporter folds
    Transpose into a view), and onnx_ir's own passes then fail on them ("ndarray is not
    C-contiguous"). The pipeline applies this once, to the converter's fresh IR.
    """
    import onnx_ir

    changed = []
    for name, value in model.graph.initializers.items():
        tensor = value.const_value
        if tensor is None:
            continue
        array = tensor.numpy()
        if isinstance(array, np.ndarray) and not array.flags.c_contiguous:
            value.const_value = onnx_ir.Tensor(np.ascontiguousarray(array), name=tensor.name,
                                               doc_string=tensor.doc_string)
            changed.append(name)
    return changed


def count_nodes(model: onnx_ir.Model) -> int:
    """Nodes in the main graph and every subgraph and function."""
    import onnx_ir

    n = sum(1 for _ in onnx_ir.traversal.RecursiveGraphIterator(model.graph))
    for fn in model.functions.values():
        n += sum(1 for _ in onnx_ir.traversal.RecursiveGraphIterator(fn))
    return n


# --- dtype names ------------------------------------------------------------------------------

_ONNX_TO_NUMPY = {
    "FLOAT": "float32", "DOUBLE": "float64", "FLOAT16": "float16", "BFLOAT16": "bfloat16",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "BOOL": "bool", "STRING": "object",
}


def onnx_dtype_name(onnx_ir_dtype) -> str:
    """numpy-style name of an ``onnx_ir.DataType``."""
    return _ONNX_TO_NUMPY.get(onnx_ir_dtype.name, onnx_ir_dtype.name.lower())


def signature_of(model: onnx_ir.Model) -> Signature:
    """Read the signature straight from an ONNX graph's inputs and outputs."""

    def spec(v) -> TensorSpec:
        shape: tuple[Dim, ...] = ()
        if v.shape is not None:
            shape = tuple(
                d if isinstance(d, int) else (d.value if d.value is not None else None)
                for d in v.shape
            )
        dtype = onnx_dtype_name(v.dtype) if v.dtype is not None else "float32"
        return TensorSpec(v.name, shape, dtype)

    initializers = set(model.graph.initializers)
    return Signature(
        tuple(spec(v) for v in model.graph.inputs if v.name not in initializers),
        tuple(spec(v) for v in model.graph.outputs),
    )


def sha256_file(path, chunk: int = 1 << 22) -> str:
    """Read into one reused buffer (no copy per block; hashlib drops the GIL on it, so files hash side by
    side in threads): a 1 GB checkpoint shard in ~0.65 s instead of ~1.3 s."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def sha256_files(paths) -> dict:
    """{path: sha256} of several files, hashed in parallel threads (a sharded checkpoint's shards)."""
    paths = list(paths)
    if len(paths) < 2:
        return {p: sha256_file(p) for p in paths}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(len(paths), os.cpu_count() or 1, 4)) as pool:
        return dict(zip(paths, pool.map(sha256_file, paths)))


def sha256_arrays(arrays: dict[str, np.ndarray]) -> str:
    """A stable hash of named arrays (in-memory sources have no file to hash)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def weight_bytes(model) -> int:
    """Bytes of an ``onnx_ir.Model``'s initializers: decides whether it fits one protobuf."""
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


# --- models past protobuf's 2 GB limit: weights held out of every ModelProto ---------------------------

PROTOBUF_LIMIT = 2**31 - 1
LARGE_MODEL_BYTES = PROTOBUF_LIMIT - (64 << 20)
"""Weights from this size on never go into a ModelProto: tools see the graph with its weights held out
(``hold_out``), onnxruntime gets them as arrays (``runtime.ort.ort_runner_for_ir``), files get external
data. A module attribute, read at call time, so a test can lower it and drive the same code with a small model."""
HOLD_OUT_MIN_BYTES = 1024  # in a large model, initializers this big are held out; smaller ones (shapes, axes) stay


def is_large(model) -> bool:
    """Whether ``model``'s weights are past what one protobuf may hold (``LARGE_MODEL_BYTES``)."""
    return weight_bytes(model) >= LARGE_MODEL_BYTES


HELD_OUT_LOCATION = "forgeml-held-out"  # the external-data location of a placeholder; no such file is ever read


def hold_out(model, *, as_inputs: bool, min_bytes: int = HOLD_OUT_MIN_BYTES, only: Callable | None = None):
    """``(proto, held)``: ``model`` as a ModelProto without the data of its initializers of ``min_bytes`` or
    more, and those tensors by name (the same objects: nothing is copied or read).

    ``as_inputs`` makes each held-out weight a graph input of its type and shape (for tools that must not
    see a constant they cannot read: the checker, shape inference, onnxsim); otherwise it stays an
    initializer whose external data names ``HELD_OUT_LOCATION`` (for onnxruntime, which is handed the
    arrays). ``only(tensor)``, when given, picks which of them to hold out. ``restore`` puts them back.
    ``model`` itself is not changed."""
    import onnx_ir

    clone = model.clone()
    held = {}
    for name, value in list(clone.graph.initializers.items()):
        tensor = value.const_value
        if tensor is None or tensor.nbytes < min_bytes or (only is not None and not only(tensor)):
            continue
        held[name] = tensor
        if as_inputs:
            value.const_value = None
            del clone.graph.initializers[name]
            value.dtype = tensor.dtype
            value.shape = onnx_ir.Shape(tensor.shape)
            if value not in clone.graph.inputs:
                clone.graph.inputs.append(value)
        else:
            value.const_value = onnx_ir.ExternalTensor(HELD_OUT_LOCATION, 0, tensor.nbytes, tensor.dtype,
                                                       shape=tensor.shape, name=name)
    return onnx_ir.serde.serialize_model(clone), held


def restore(proto, held: dict):
    """The ``onnx_ir.Model`` of a proto made by ``hold_out`` (or a tool's rewrite of one), its held-out
    weights back in place: graph inputs named like a held-out weight become that initializer again; a
    weight the tool dropped stays dropped."""
    import onnx_ir

    model = onnx_ir.serde.deserialize_model(proto)
    graph = model.graph
    for value in list(graph.inputs):
        if value.name in held:
            graph.inputs.remove(value)
            value.const_value = held[value.name]
            graph.register_initializer(value)
    for name, value in graph.initializers.items():
        tensor = value.const_value
        if name in held and isinstance(tensor, onnx_ir.ExternalTensor) and str(tensor.location) == HELD_OUT_LOCATION:
            value.const_value = held[name]
    return model


def release_mappings(model) -> None:
    """Unmap the external-data files the model's weights were read through (they map again on next use):
    pages a pass or runtime touched stop counting in the process's resident memory."""
    import onnx_ir

    for value in model.graph.initializers.values():
        if isinstance(value.const_value, onnx_ir.ExternalTensor):
            try:
                value.const_value.release()
            except BufferError:  # a live array (a runner's session) still reads this mapping: it stays
                pass


# --- what a converter hands on: the IR plus handles on the source -------------------------------------

class SourceWeights(Protocol):
    """The source model's weights under its own parameter names, and a way to run it with others.

    The safetensors target writes ``named()`` and proves the file by loading it back through
    ``runner_with``: the source model with the file's weights, in the source framework.
    """

    framework: str

    def named(self) -> dict[str, np.ndarray]: ...

    def runner_with(self, weights: dict[str, np.ndarray]) -> Runner: ...


@dataclass(frozen=True)
class DecoderSpec:
    """A causal LM exported with a KV cache: the layout every decode loop and generation config needs.

    Inputs ``input_ids`` and ``position_ids`` (batch, sequence), ``attention_mask`` (batch, past +
    sequence), ``past_key_values.{i}.key/value`` (batch, kv_heads, past, head_dim); outputs ``logits``
    (batch, sequence, vocab) and ``present.{i}.key/value`` (batch, kv_heads, past + sequence,
    head_dim): the names and layout of onnxruntime-genai and Optimum's ORT decoders.
    ``generate(prompt_ids, n)`` is the source framework's own greedy decode (tokens, per-step logits).
    """

    model_type: str  # config.json's model_type: llama, qwen2, gpt2, phi3, …
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    vocab: int
    context: int
    bos_token_id: int | None
    eos_token_id: int | list[int] | None
    pad_token_id: int | None
    generate: Callable[[list[int], int], tuple[list[int], np.ndarray]]
    tokenizer_dir: Path | None = None  # where the source's tokenizer files are (copied beside the model)
    prompts: tuple[tuple[int, ...], ...] = ()  # token ids the generation check starts from

    def past_name(self, layer: int, kind: str) -> str:
        return f"past_key_values.{layer}.{kind}"

    def present_name(self, layer: int, kind: str) -> str:
        return f"present.{layer}.{kind}"

    def input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "position_ids"] + [
            self.past_name(i, k) for i in range(self.layers) for k in ("key", "value")]

    def output_names(self) -> list[str]:
        return ["logits"] + [self.present_name(i, k) for i in range(self.layers) for k in ("key", "value")]


@dataclass(frozen=True, eq=False)
class Seq2SeqPrompt:
    """One input of an encoder-decoder's generation check: the encoder's inputs (batch 1) and the
    decoder ids decoding starts from (the decoder start token). ``len`` is the decoder prefix's."""

    encoder: dict[str, np.ndarray]
    start: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.start)


@dataclass(frozen=True)
class Seq2SeqSpec:
    """An encoder-decoder exported as encoder + decoder-with-past (Optimum's ORT seq2seq names).

    The IR is both graphs side by side in one model (``input_names``/``output_names``), so every
    pass and parity check sees both; the onnx target writes them as two files. The encoder takes
    ``input_ids``/``attention_mask`` (text) or ``input_features`` (audio) and gives
    ``last_hidden_state`` plus each decoder layer's cross-attention ``present.{i}.encoder.key/value``
    (batch, heads, encoder_sequence_length, head_dim): computed once per input, so the decoder never
    needs Optimum's third, no-past decoder file. The decoder takes ``decoder_input_ids`` (``input_ids``
    in its file), ``encoder_attention_mask`` (text), ``encoder_hidden_states`` and
    ``past_key_values.{i}.decoder/encoder.key/value`` and gives ``logits`` and
    ``present.{i}.decoder.key/value``; its first step has a self-attention past of length 0.
    ``generate(prompt, n)`` is the source framework's own greedy decode (tokens, per-step logits).
    """

    model_type: str
    layers: int  # decoder layers
    heads: int  # decoder attention heads (self and cross)
    head_dim: int
    hidden: int  # d_model: encoder_hidden_states' last dim
    vocab: int
    encoder_inputs: tuple[str, ...]  # ("input_ids", "attention_mask") or ("input_features",)
    decoder_start_token_id: int
    eos_token_id: int | list[int] | None
    pad_token_id: int | None
    generate: Callable
    prompts: tuple[Seq2SeqPrompt, ...] = ()

    ENCODER_FILE = "encoder_model.onnx"
    DECODER_FILE = "decoder_with_past_model.onnx"
    DECODER_RENAMES = (("decoder_input_ids", "input_ids"),)  # union name -> the decoder file's name

    @property
    def masked(self) -> bool:
        """Whether the decoder takes ``encoder_attention_mask`` (text encoders; Whisper has none)."""
        return "attention_mask" in self.encoder_inputs

    def past_name(self, layer: int, kind: str, side: str = "decoder") -> str:
        return f"past_key_values.{layer}.{side}.{kind}"

    def present_name(self, layer: int, kind: str, side: str = "decoder") -> str:
        return f"present.{layer}.{side}.{kind}"

    def encoder_outputs(self) -> list[str]:
        return ["last_hidden_state"] + [self.present_name(i, k, "encoder")
                                        for i in range(self.layers) for k in ("key", "value")]

    def decoder_inputs(self) -> list[str]:
        names = ["decoder_input_ids"] + (["encoder_attention_mask"] if self.masked else []) + ["encoder_hidden_states"]
        return names + [self.past_name(i, k, side) for i in range(self.layers)
                        for side in ("decoder", "encoder") for k in ("key", "value")]

    def decoder_outputs(self) -> list[str]:
        return ["logits"] + [self.present_name(i, k) for i in range(self.layers) for k in ("key", "value")]

    def input_names(self) -> list[str]:
        return list(self.encoder_inputs) + self.decoder_inputs()

    def output_names(self) -> list[str]:
        return self.encoder_outputs() + self.decoder_outputs()


@dataclass
class ConvertResult:
    ir: IRModel
    reference: Runner  # runs the original model in its own framework
    reference_name: str  # e.g. "torch 2.13.0 eager"
    example_inputs: InputSet
    weights: SourceWeights | None = None
    source_model: object | None = None  # the original in-memory model (torch module, …), when there is one
    checkpoint: Path | None = None  # the source checkpoint on disk (hf dirs), for targets that stream from it
    decoder: DecoderSpec | None = None  # a KV-cache causal LM: generation parity and genai_config.json
    seq2seq: Seq2SeqSpec | None = None  # an encoder-decoder: two files from one IR, generation parity
