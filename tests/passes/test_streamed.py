"""Precision passes past protobuf's 2 GB limit (``passes/precision/streamed.py``), driven cheaply:
``forgeml.ir.LARGE_MODEL_BYTES`` lowered to 256 KiB makes a 3 MB model take the code path a 2+ GB one
takes. Each streamed rewrite is compared with onnxruntime's own quantizer / float16 converter on the
same model below the limit (the path every other test covers): the same outputs, from a model whose
weights never sat in a ModelProto. The real 2.25 GiB runs are ``scripts/bigmodel.py --quantize``."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import onnx_ir
import pytest

import forgeml
import forgeml.ir
import forgeml.runtime.ort
from forgeml.errors import PassError
from forgeml.passes.precision.base import BudgetConfig
from forgeml.passes.precision.quantize import Int4Config, Int4Pass, Int8DynamicConfig, Int8DynamicPass
from forgeml.runtime.ort import ort_runner, ort_runner_for_ir
from scripts.bigmodel import build_model

LIMIT = 256 << 10
NO_BUDGET = BudgetConfig(min_cosine=-1.0, min_centered_cosine=-1.0, min_top1=0.0, fallback=False, held_out=False)


@pytest.fixture
def spy(monkeypatch):
    """Every protobuf handed to onnxruntime, by size, while the limit is lowered."""
    sizes: list[int] = []
    real = forgeml.runtime.ort.ort_runner

    def spy_runner(model, **kw):
        if isinstance(model, bytes):
            sizes.append(len(model))
        return real(model, **kw)

    monkeypatch.setattr(forgeml.runtime.ort, "ort_runner", spy_runner)
    return sizes


def _src(tmp_path):
    return build_model(tmp_path / "src", weight_bytes=3 << 20, dim=256)  # 12 weights of 256 KiB, MatMul and Gemm


def _scratch_dirs(tmp_path):
    return sorted(tmp_path.glob("forgeml-weights-*"))


@pytest.mark.parametrize("mode", ["int8", "fp16"])
def test_streamed_mode_equals_onnxruntimes_own_below_the_limit(tmp_path, monkeypatch, spy, mode):
    """The whole pipeline past the (lowered) limit gives the artifact onnxruntime's quantizer/converter gives
    below it: same outputs (fallback choices included), weights in external data, no weighty protobuf."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    src = build_model(tmp_path / "src", weight_bytes=3 << 19, dim=256)  # 6 weights of 256 KiB, 3 biases
    # the point is equality of the two paths, not this random net's top-1 ties: a budget every CPU meets
    # (on AVX2, reduce_range's int8 missed the default top-1 0.98 by one sample of 32 under emulation)
    quantize = forgeml.QuantizeOptions(mode=mode, min_top1=0.9)
    small = forgeml.convert(str(src), targets=["onnx"], quantize=quantize, out_dir=tmp_path / "small")
    monkeypatch.setattr(forgeml.ir, "LARGE_MODEL_BYTES", LIMIT)
    spy.clear()
    big = forgeml.convert(str(src), targets=["onnx"], quantize=quantize, out_dir=tmp_path / "big")
    assert big.ok, big.parity.table()
    stage = big.manifest["stages"][-2]
    assert stage["details"]["large_model"]["weights_held_out"] == 9
    # the same nodes kept in float (below the limit a Gemm is first rewritten into "<name>_MatMul" + Add)
    kept = small.manifest["stages"][-2]["details"]["kept_in_float"]
    assert stage["details"]["kept_in_float"] == [k.removesuffix("_MatMul") for k in kept]
    assert spy and max(spy) < LIMIT  # no session got its weights inside a protobuf
    out = big.artifacts["onnx"]
    assert [f.name for f in out.files] == ["model.onnx", "model.onnx.data"]
    assert out.path.stat().st_size < LIMIT
    x = np.random.default_rng(3).standard_normal((2, 256), dtype=np.float32)
    want = ort_runner(small.artifacts["onnx"].path)({"x": x})["y"]
    got = ort_runner(out.path)({"x": x})["y"]
    np.testing.assert_array_equal(got, want)
    # the pass's scratch weights go with the last model that names them
    del big
    gc.collect()
    assert _scratch_dirs(tmp_path) == []


def test_int8_streamed_weights_are_onnxruntimes_exactly(tmp_path, monkeypatch):
    """Per-channel int8 weights and scales byte for byte as onnxruntime's quantizer writes them, Gemm's
    transposed weight included; reduce_range (7-bit) too."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    model = _ir(_src(tmp_path))
    for reduce_range in (False, True):
        cfg = Int8DynamicConfig(per_channel=True, reduce_range=reduce_range, budget=NO_BUDGET)
        small = Int8DynamicPass(cfg)(_loaded(model)).model
        monkeypatch.setattr(forgeml.ir, "LARGE_MODEL_BYTES", LIMIT)
        big = Int8DynamicPass(cfg)(model).model
        monkeypatch.setattr(forgeml.ir, "LARGE_MODEL_BYTES", 1 << 40)
        want = {n: v.const_value.numpy() for n, v in small.graph.initializers.items() if "quantized" in n or "scale" in n}
        got = {n: v.const_value.numpy() for n, v in big.graph.initializers.items() if n in want}
        assert set(got) == set(want) and len(want) == 24  # 12 weights and their 12 per-channel scales
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        assert all(isinstance(big.graph.initializers[n].const_value, onnx_ir.ExternalTensor)
                   for n in got if n.endswith("_quantized"))


def test_int4_streamed_equals_matmulnbits_quantizer(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    model = _ir(_src(tmp_path))
    x = np.random.default_rng(5).standard_normal((2, 256), dtype=np.float32)
    for symmetric in (True, False):
        cfg = Int4Config(block_size=32, symmetric=symmetric, budget=NO_BUDGET)
        small = Int4Pass(cfg)(_loaded(model)).model
        monkeypatch.setattr(forgeml.ir, "LARGE_MODEL_BYTES", LIMIT)
        big = Int4Pass(cfg)(model).model
        monkeypatch.setattr(forgeml.ir, "LARGE_MODEL_BYTES", 1 << 40)
        assert sum(n.op_type == "MatMulNBits" for n in big.graph) == 12
        np.testing.assert_array_equal(ort_runner_for_ir(big)({"x": x})["y"], ort_runner_for_ir(small)({"x": x})["y"])


def test_streamed_int8_holds_one_block_not_the_weights(tmp_path, monkeypatch):
    """Python-side allocations while quantizing 12 MiB of weights (three of 4 MiB) stay under half of one
    weight: each is read from its mapping a block of rows at a time and written out, never gathered."""
    import forgeml.passes.precision.streamed as streamed

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(streamed, "ROW_BLOCK_BYTES", 64 << 10)
    monkeypatch.setattr(forgeml.ir, "LARGE_MODEL_BYTES", LIMIT)
    model = _ir(build_model(tmp_path / "src", weight_bytes=12 << 20, dim=1024))
    p = Int8DynamicPass(Int8DynamicConfig(per_channel=True, reduce_range=False, budget=NO_BUDGET))
    p(model)  # once untraced: the imports and caches of a first run are not the pass's memory
    tracemalloc.start()
    try:
        out = p(model).model
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20, f"{peak} bytes traced"
    assert sum(n.op_type == "MatMulInteger" for n in out.graph) == 3


def test_int8_static_past_the_limit_is_one_line(tmp_path, monkeypatch):
    from forgeml.options import QuantizeOptions

    monkeypatch.setattr(forgeml.ir, "LARGE_MODEL_BYTES", LIMIT)
    src = build_model(tmp_path / "src", weight_bytes=1 << 20, dim=256)
    with pytest.raises(PassError, match=r"int8-static: .* past protobuf's 2 GB limit, where only int8 \(dynamic\)"):
        forgeml.convert(str(src), targets=["onnx"], out_dir=tmp_path / "out",
                        quantize=QuantizeOptions("int8-static", synthetic_calibration=True))
    assert not (tmp_path / "out").exists()


def test_weight_file_aligns_maps_back_and_sweeps_dead_runs(tmp_path):
    import os

    from forgeml.formats.weight_file import ALIGN, WeightFile

    dead = tmp_path / "forgeml-weights-999999999-abc"  # a pid no process has
    dead.mkdir()
    live = tmp_path / f"forgeml-weights-{os.getppid()}-abc"
    live.mkdir()
    wf = WeightFile(tmp_path)
    assert not dead.exists() and live.exists()
    a = np.arange(10, dtype=np.float32)
    b = np.arange(12, dtype=np.int8).reshape(3, 4)
    ta = wf.add("a", onnx_ir.DataType.FLOAT, a.shape, [a[:4], a[4:]])
    tb = wf.add("b", onnx_ir.DataType.INT8, b.shape, [b])
    with pytest.raises(ValueError, match="wrote 12 bytes"):
        wf.add("c", onnx_ir.DataType.FLOAT, (4,), [b])
    wf.close()
    assert tb.offset % ALIGN == 0 and tb.offset > 0
    np.testing.assert_array_equal(ta.numpy(), a)
    np.testing.assert_array_equal(tb.numpy(), b)
    where = wf.dir
    del wf, ta
    gc.collect()
    assert where.exists()  # tb still names it
    tb.release()
    del tb
    gc.collect()
    assert not where.exists()


def _ir(path):
    """The ONNX file as the converter's IR: weights still mapped from their data file."""
    import onnx_ir as ir

    return ir.load(str(path))


def _loaded(model):
    """A copy with every weight in memory (the below-the-limit path reads them into its proto)."""
    from onnx_ir.external_data import load_to_model

    return load_to_model(model.clone())
