"""A verdict computed on exactly the metrics it prints: lower-precision stages are judged on held-out samples
as well as the parity inputs, and the table, report.md/html, the manifest and the exit code say the same.
Real onnxruntime numbers; the properties asserted hold on every x86-64 CPU."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tests.passes.conftest import mlp_proto

from forgeml.ir import Signature, TensorSpec
from forgeml.manifest import Manifest
from forgeml.parity.inputs import held_out_inputs, parity_inputs
from forgeml.passes.base import ForgePass, from_proto, to_proto
from forgeml.pipeline.config import build_config
from forgeml.pipeline.run import run
from forgeml.pipeline.sources import resolve
from forgeml.report.gating import exit_code, headline, shown, verdict, warnings
from onnx_ir.passes import PassResult


def _model(path: Path) -> Path:
    onnx.save(mlp_proto(), str(path))
    return path


def _example() -> dict:
    return {"x": np.random.default_rng(11).normal(size=(1, 16)).astype(np.float32)}


@dataclass(frozen=True)
class RareFlipConfig:
    threshold: float = 0.0


class RareFlipPass(ForgePass):
    """An 'int8' stage whose error shows only on some inputs: where x[:, 0] > threshold it adds a large
    bump to the logit that is never the top-1, so top-1 flips there and nowhere else. It stands for a
    quantized model that agrees on the few parity inputs and not on fresh ones, without depending on
    which int8 kernels this CPU has."""

    name = "rare-flip"
    Config = RareFlipConfig

    def output_precision(self, precision: str) -> str:
        return "int8"

    def call(self, model) -> PassResult:
        proto = to_proto(model)
        g = proto.graph
        logits = g.output[0].name
        g.node[-1].output[0] = "logits_float"
        g.initializer.extend([
            numpy_helper.from_array(np.array([0], np.int64), "rf_start"),
            numpy_helper.from_array(np.array([1], np.int64), "rf_end"),
            numpy_helper.from_array(np.array([1], np.int64), "rf_axis"),
            numpy_helper.from_array(np.array(self.config.threshold, np.float32), "rf_t"),
            numpy_helper.from_array(np.full(8, 1000.0, np.float32), "rf_bump")])
        g.node.extend([
            helper.make_node("Slice", ["x", "rf_start", "rf_end", "rf_axis"], ["rf_x0"], name="rf_slice"),
            helper.make_node("Greater", ["rf_x0", "rf_t"], ["rf_gt"], name="rf_gt"),
            helper.make_node("Cast", ["rf_gt"], ["rf_on"], name="rf_cast", to=TensorProto.FLOAT),
            # the bump goes to the class the float model ranks last, so the top-1 changes wherever it is on
            helper.make_node("ArgMin", ["logits_float"], ["rf_last"], name="rf_argmin", axis=1, keepdims=0),
            helper.make_node("OneHot", ["rf_last", "rf_depth", "rf_values"], ["rf_hot"], name="rf_onehot"),
            helper.make_node("Mul", ["rf_hot", "rf_bump"], ["rf_scaled"], name="rf_scale"),
            helper.make_node("Mul", ["rf_scaled", "rf_on"], ["rf_add"], name="rf_mask"),
            helper.make_node("Add", ["logits_float", "rf_add"], [logits], name="rf_out")])
        g.initializer.extend([numpy_helper.from_array(np.array(8, np.int64), "rf_depth"),
                              numpy_helper.from_array(np.array([0, 1], np.float32), "rf_values")])
        return PassResult(from_proto(proto), True)


def _threshold(example: dict, held_out_samples: int) -> tuple[float, float]:
    """A threshold no parity input crosses, and the fraction of held-out samples that do (seeds only: the
    same on every CPU)."""
    sig = Signature((TensorSpec("x", ("n", 16), "float32"),), (TensorSpec("logits", ("n", 8), "float32"),))
    sets = parity_inputs(example, sig, batches=3, seed=0, dynamic_batch=False)
    t = float(max(s["x"][:, 0].max() for s in sets)) + 1e-3
    held = held_out_inputs(example, sig, samples=held_out_samples, seed=0)
    return t, float(np.mean([s["x"][0, 0] > t for s in held]))


def _convert(tmp_path: Path, name: str, *, held_out_samples: int, threshold: float):
    config = build_config(targets=["onnx"], passes=["check"])
    config = dataclasses.replace(config, passes=(*config.passes, RareFlipPass(threshold=threshold)),
                                 held_out_samples=held_out_samples, latency=False)
    return run(resolve(str(_model(tmp_path / "m.onnx")), _example()), config, tmp_path / name)


def test_a_stage_that_agrees_on_the_parity_inputs_but_not_on_fresh_ones_fails(tmp_path):
    t, crossing = _threshold(_example(), 64)
    assert crossing > 0.15  # the held-out samples cross it often enough to miss the int8 profile's top-1 0.9
    # Without held-out samples (the verdict before): four parity samples, none crossing: top-1 1.0, PASS.
    before = _convert(tmp_path, "before", held_out_samples=0, threshold=t)
    st = before.record.stage("rare-flip")
    assert st.parity.batches == 4 and st.parity.rows[0].top1 == 1.0 and before.ok
    # With them: the top-1 printed is the one judged, below the profile, and everything says FAIL.
    after = _convert(tmp_path, "after", held_out_samples=64, threshold=t)
    m = after.record
    st = m.stage("rare-flip")
    row = st.parity.rows[0]
    assert st.parity.batches == 4 + 64 and m.parity_data.held_out.batches == 64
    assert abs(row.top1 - (1 - crossing * 64 / 68)) < 1e-9
    assert float(shown(row.top1, 4)) < st.parity.tolerance.min_top1 and not row.passed
    assert "top-1" in row.problem
    assert not m.ok and exit_code(m) == 1 == after.exit_code and verdict(m) == "FAIL"
    out = tmp_path / "after"
    assert (out / "report.md").read_text().startswith("# forgeml parity report — FAIL")
    assert "forgeml parity report — FAIL" in (out / "report.html").read_text()
    assert Manifest.read(out / "manifest.json").ok is False
    # the fp32 stages keep their elementwise verdict on the parity inputs alone
    assert m.stage("check").parity.batches == 4


def _consistent(row, tol) -> bool:
    """The verdict recomputed from the digits a person reads (truncated, as printed)."""
    ok = True
    if row.cosine is not None:
        ok &= float(shown(row.cosine, 6)) >= tol.min_cosine
    if row.centered_cosine is not None and tol.min_centered_cosine is not None:
        ok &= float(shown(row.centered_cosine, 4)) >= tol.min_centered_cosine
    if row.top1 is not None and tol.min_top1 is not None:
        ok &= float(shown(row.top1, 4)) >= tol.min_top1
    return ok


def test_int8_verdict_is_the_printed_metrics_on_batch_one_models(tmp_path):
    """A batch-1 example: centered cosine is pooled over every sample, so it is printed and judged."""
    from forgeml.api import convert
    from forgeml.options import ParityOptions, QuantizeOptions

    result = convert(str(_model(tmp_path / "m.onnx")), _example(), targets=["onnx"], out_dir=tmp_path / "o",
                     quantize=QuantizeOptions("int8", min_top1=0.0),
                     parity=ParityOptions(held_out_samples=32, fail_on="warn"))
    m = result.record
    for st in m.checked():
        tol = st.parity.tolerance
        if tol.atol is None:  # a statistical profile: every metric it judges is there to print
            assert st.parity.batches == 4 + 32
            for row in st.parity.rows:
                assert row.centered_cosine is not None and row.top1 is not None
                assert row.passed == _consistent(row, tol)
    assert m.ok == all(st.parity.passed for st in m.checked())
    assert m.fail_on == "warn" and result.exit_code == exit_code(m) == (0 if m.ok and not warnings(m) else 1)
    md = (tmp_path / "o" / "report.md").read_text()
    assert md.startswith(f"# forgeml parity report — {headline(m)}")
    assert "32 held-out batches" in md
    held = m.stage("int8-dynamic").details.held_out
    assert held.batches and f"on {held.batches} held-out batches" in md


def test_fail_on_warn_is_recorded_and_every_report_agrees(tmp_path, capsys):
    """Synthetic calibration always warns: under --fail-on warn the CLI prints the warning and FAIL, exits 1,
    and report.md, report.html and the manifest's gate say the same."""
    from forgeml.cli.app import main

    model = _model(tmp_path / "m.onnx")
    out = tmp_path / "o"
    rc = main(["convert", str(model), "--to", "onnx", "--quantize", "int8-static", "--calib-synthetic",
               "--min-top1", "0", "--held-out-samples", "8", "--fail-on", "warn", "-o", str(out)])
    printed = capsys.readouterr().out.replace("\n", " ")
    m = Manifest.read(out / "manifest.json")
    if not m.ok:  # int8 itself missed its profile here: a plain FAIL, exit 1, whatever the gate
        assert rc == 1 and verdict(m) == "FAIL"
        return
    ws = warnings(m)
    assert any("synthetic" in w for w in ws) and m.fail_on == "warn"
    assert rc == 1 == exit_code(m) and verdict(m) == "FAIL"
    assert "FAIL (--fail-on warn: " in printed and "synthetic random inputs" in printed
    md = (out / "report.md").read_text()
    assert md.startswith(f"# forgeml parity report — FAIL (--fail-on warn: {len(ws)} warning(s))")
    assert all(f"WARNING: {w}" in md for w in ws)
    assert "FAIL (--fail-on warn:" in (out / "report.html").read_text()
