"""Every file reader forgeml has, each with a valid seed file built here and a call that reads it.

A fuzz case writes the seed's files into a fresh directory, replaces one of them with mutated bytes,
and calls the reader. The property (``outcome``): it returns normally or raises ``InputError``;
any other exception is a crash, and a call that burns more than ``TIME_LIMIT`` CPU seconds is a hang.
"""

from __future__ import annotations

import io
import json
import re
import warnings
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from forgeml.errors import InputError

TIME_LIMIT = 10.0  # CPU seconds one read may burn before it counts as a hang
HUGE = (0xFFFFFFFF, 1 << 31, 1 << 40, (1 << 63) - 1, (1 << 64) - 1)


@dataclass(frozen=True)
class Reader:
    name: str
    files: Callable[[], dict[str, bytes]]  # a valid seed: file name -> content
    target: str  # the file the fuzzer mutates
    call: Callable[[Path], object]  # reads the directory the files were written to


# --- seeds ------------------------------------------------------------------------------------------

def _onnx_files() -> dict[str, bytes]:
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(4, 4), "w")
    raw = w.raw_data
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "w.bin"), ("offset", "0"), ("length", "64")):
        e = w.external_data.add()
        e.key, e.value = k, v
    c = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.ones((1, 4), np.float32)))
    g = helper.make_graph([c, helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "c"], ["y"])],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    m.metadata_props.add(key="forgeml.precision", value="fp32")
    return {"m.onnx": m.SerializeToString(), "w.bin": raw}


def _read_onnx(d: Path):
    from forgeml.formats import onnx_file
    from forgeml.pipeline.inspection import inspect_file
    from forgeml.targets.onnx.target import file_signature

    inspect_file(d / "m.onnx")
    proto = onnx_file.load(d / "m.onnx")
    file_signature(proto, d / "m.onnx")  # what `parity A B` does with it before onnxruntime sees it
    return proto


def _safetensors_bytes() -> bytes:
    from safetensors.numpy import save

    return save({"a.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "a.bias": np.ones(4, np.float16),
                 "ids": np.arange(5, dtype=np.int64)}, metadata={"format": "np"})


def _read_safetensors(d: Path):
    from forgeml.formats.safetensors import read_header

    return read_header(d / "model.safetensors")


def _gguf_bytes() -> bytes:
    import tempfile

    import gguf

    with tempfile.TemporaryDirectory() as t:
        p = Path(t) / "m.gguf"
        w = gguf.GGUFWriter(str(p), "llama")
        w.add_name("fuzz")
        w.add_uint32("llama.context_length", 64)
        w.add_float32("llama.rope.freq_base", 10000.0)
        w.add_bool("general.flag", True)
        w.add_tokenizer_model("gpt2")
        w.add_token_list(["a", "b", "<s>"])
        w.add_token_scores([0.0, -1.0, -2.0])
        w.add_tensor("tok.weight", np.arange(12, dtype=np.float32).reshape(3, 4))
        w.add_tensor("out.weight", np.ones((4, 2), np.float16))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return p.read_bytes()


def _read_gguf(d: Path):
    from forgeml.formats.gguf import inspect_gguf

    return inspect_gguf(d / "m.gguf")


def _tflite_bytes() -> bytes:
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    from forgeml.formats import tflite

    m = fb.ModelT()
    m.version, m.description = 3, "fuzz seed"
    m.buffers = [fb.BufferT(), fb.BufferT(), fb.BufferT()]
    m.buffers[1].data = np.ones(4, np.float32).view(np.uint8)
    code = fb.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = fb.BuiltinOperator.ADD, fb.BuiltinOperator.ADD, 1
    m.operatorCodes = [code]
    tensors = []
    for i, (name, buf) in enumerate((("x", 0), ("b", 1), ("y", 2))):
        t = fb.TensorT()
        t.shape, t.type, t.buffer, t.name = np.array([1, 4], np.int32), fb.TensorType.FLOAT32, buf, name
        tensors.append(t)
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, np.array([0, 1], np.int32), np.array([2], np.int32)
    sub = fb.SubGraphT()
    sub.tensors, sub.operators = tensors, [op]
    sub.inputs, sub.outputs = np.array([0], np.int32), np.array([2], np.int32)
    m.subgraphs = [sub]
    sig = fb.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = "serving_default", 0
    sig.inputs = [fb.TensorMapT()]
    sig.inputs[0].name, sig.inputs[0].tensorIndex = "x", 0
    sig.outputs = [fb.TensorMapT()]
    sig.outputs[0].name, sig.outputs[0].tensorIndex = "y", 2
    m.signatureDefs = [sig]
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(m))
    io_map = tflite.IOMap((tflite.TensorMap("x", "x", (0, 1), (1, 4), (1, 4), "float32", "float32"),),
                          (tflite.TensorMap("y", "y", None, (1, 4), (1, 4), "float32", "float32"),))
    return tflite.embed(data, io_map)


def _read_tflite(d: Path):
    from forgeml.formats.tflite import describe

    return describe(d / "m.tflite")


def _pickle_bytes() -> bytes:
    import pickle

    obj = {"a": [1, 2.5, "x", None], "b": (b"raw", True), "arr": np.arange(6, dtype=np.float32).reshape(2, 3)}
    return pickle.dumps(obj, protocol=4) + pickle.dumps([1, 2], protocol=2)


def _read_pickle(d: Path):
    from forgeml.security.pickle_scan import scan_bytes

    report = scan_bytes((d / "m.pkl").read_bytes(), "m.pkl")
    return f"scan: {len(report.dangerous)} dangerous, {len(report.flagged)} flagged, {report.problems[:1]}"


def _npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, x=np.arange(24, dtype=np.float32).reshape(3, 2, 4), y=np.arange(3, dtype=np.int64))
    return buf.getvalue()


def _read_npz(d: Path):
    from forgeml.parity.inputs import load_calibration, read_npz

    read_npz(d / "data.npz")
    return load_calibration(d / "data.npz")


def _hf_files() -> dict[str, bytes]:
    cfg = {"model_type": "bert", "hidden_size": 4, "num_hidden_layers": 1, "vocab_size": 5,
           "architectures": ["BertModel"]}
    index = {"metadata": {"total_size": 60}, "weight_map": {"a.weight": "model.safetensors"}}
    return {"config.json": json.dumps(cfg).encode(), "tokenizer.json": b'{"model": {"type": "WordLevel"}}',
            "model.safetensors.index.json": json.dumps(index).encode(), "model.safetensors": _safetensors_bytes()}


def _read_hf(d: Path):
    from forgeml.formats.hf_checkpoint import check_checkpoint

    return check_checkpoint(d)


READERS: dict[str, Reader] = {r.name: r for r in (
    Reader("onnx", _onnx_files, "m.onnx", _read_onnx),
    Reader("onnx-data", _onnx_files, "w.bin", _read_onnx),
    Reader("safetensors", lambda: {"model.safetensors": _safetensors_bytes()}, "model.safetensors", _read_safetensors),
    Reader("gguf", lambda: {"m.gguf": _gguf_bytes()}, "m.gguf", _read_gguf),
    Reader("tflite", lambda: {"m.tflite": _tflite_bytes()}, "m.tflite", _read_tflite),
    Reader("pickle", lambda: {"m.pkl": _pickle_bytes()}, "m.pkl", _read_pickle),
    Reader("npz", lambda: {"data.npz": _npz_bytes()}, "data.npz", _read_npz),
    Reader("hf-config", _hf_files, "config.json", _read_hf),
    Reader("hf-index", _hf_files, "model.safetensors.index.json", _read_hf),
    Reader("hf-weights", _hf_files, "model.safetensors", _read_hf),
)}

_SEEDS: dict[str, dict[str, bytes]] = {}


def seed(name: str) -> dict[str, bytes]:
    """The reader's valid files (built once per process)."""
    if name not in _SEEDS:
        _SEEDS[name] = READERS[name].files()
    return _SEEDS[name]


# --- mutations ----------------------------------------------------------------------------------

def mutate(data: bytes, ops) -> bytes:
    """Apply ``ops``: ("flip", pos, mask) | ("truncate", n) | ("splice", pos, bytes) |
    ("huge", pos, value, width) | ("copy", src, dst, n); positions wrap around the data."""
    b = bytearray(data)
    for op in ops:
        n = len(b) or 1
        kind = op[0]
        if kind == "flip" and b:
            b[op[1] % n] ^= op[2] or 1
        elif kind == "truncate":
            del b[op[1] % n:]
        elif kind == "splice":
            b[op[1] % n:op[1] % n] = op[2]
        elif kind == "huge" and b:
            pos, width = op[1] % n, op[3]
            b[pos:pos + width] = (op[2] & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
        elif kind == "copy" and b:
            chunk = b[op[1] % n:op[1] % n + op[3]]
            b[op[2] % n:op[2] % n] = chunk
    return bytes(b)


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"a read burnt more than {TIME_LIMIT} s of CPU")


def outcome(name: str, data: bytes, workdir: Path) -> str:
    """Write the seed with the target replaced by ``data`` and read it: ``ok`` or a normalised
    InputError line; any other exception propagates (a crash), as does ``Hang``."""
    r = READERS[name]
    workdir.mkdir(parents=True, exist_ok=True)
    for f, content in seed(name).items():
        (workdir / f).write_bytes(data if f == r.target else content)
    # CPU time, not wall time: on a shared, loaded machine a slow read is not a hang (a wall-clock
    # alarm fired there). It repeats each CPU second: one raised inside a garbage-collector callback is
    # swallowed by the interpreter, the next lands in the read.
    old = signal.signal(signal.SIGPROF, _alarm)
    signal.setitimer(signal.ITIMER_PROF, TIME_LIMIT, 1.0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = r.call(workdir)
        return "ok" + (f": {re.sub(r'[0-9]+', 'N', got)[:70]}" if isinstance(got, str) else "")
    except InputError as e:
        text = str(e)
        assert "\n" not in text.strip(), f"a multi-line InputError: {text!r}"
        text = text.replace(str(workdir), "DIR")
        return "InputError: " + re.sub(r"\d+", "N", text)[:70]
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


def huge_cases(name: str, span: int = 256):
    """Deterministic huge-length mutations: every huge value at every 4-byte step of the first ``span``
    bytes, as 4- and 8-byte little-endian integers (where length and count fields live)."""
    data = seed(name)[READERS[name].target]
    for pos in range(0, min(span, len(data)), 4):
        for value in HUGE:
            for width in (4, 8):
                yield mutate(data, [("huge", pos, value, width)])


def strategy(name: str):
    """A hypothesis strategy of mutated target files for reader ``name``."""
    from hypothesis import strategies as st

    data = seed(name)[READERS[name].target]
    n = max(len(data), 1)
    pos = st.one_of(st.integers(0, min(n - 1, 64)), st.integers(0, n - 1))
    op = st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(1, 255)),
        st.tuples(st.just("truncate"), st.integers(0, n - 1)),
        st.tuples(st.just("splice"), pos, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("huge"), pos, st.sampled_from(HUGE), st.sampled_from((1, 2, 4, 8))),
        st.tuples(st.just("copy"), pos, pos, st.integers(1, 64)),
    )
    return st.lists(op, min_size=1, max_size=4).map(lambda ops: mutate(data, ops))


