"""Stage planning: targets that write from the source (gguf, safetensors) never make the ONNX IR."""

from __future__ import annotations

import json

import pytest

from forgeml.errors import InputError
from forgeml.pipeline.config import build_config
from forgeml.pipeline.plan import plan_stages


class _NoReference:
    name = "torch"  # a converter that computes its reference only through the export


def _hf():
    from forgeml.converters.hf import HFConverter

    return HFConverter()


def test_source_targets_skip_the_export_and_the_passes():
    plan = plan_stages(build_config(targets=["gguf", "safetensors"]), _hf())
    assert not plan.build_ir and not plan.run_passes
    assert "hf->onnx" in plan.skipped and len(plan.skipped) > 1  # the default passes too
    assert plan.source_targets == ("gguf", "safetensors") and "reads the ONNX IR" in plan.reason


def test_an_ir_target_builds_the_ir_once_for_all():
    plan = plan_stages(build_config(targets=["onnx", "gguf"]), _hf())
    assert plan.build_ir and plan.run_passes and plan.ir_targets == ("onnx",) and not plan.skipped


def test_a_converter_without_reference_only_still_exports():
    plan = plan_stages(build_config(targets=["safetensors"]), _NoReference())
    assert plan.build_ir and "only through the export" in plan.reason


def test_explicit_passes_without_an_ir_target_are_refused():
    with pytest.raises(InputError, match="`passes` simplify.*gguf"):
        plan_stages(build_config(targets=["gguf"], passes=["simplify"]), _hf())
    assert not plan_stages(build_config(targets=["gguf"], passes=[]), _hf()).build_ir


def test_cli_refuses_passes_with_one_line(tmp_path, capsys):
    from forgeml.cli.app import main

    out = tmp_path / "out"
    assert main(["convert", "zoo:tiny-llama", "--to", "gguf", "--passes", "simplify", "-o", str(out)]) == 2
    err = capsys.readouterr()
    text = err.out + err.err
    assert "--passes simplify" in text and "Traceback" not in text and not out.exists()


def test_safetensors_from_a_checkpoint_never_exports(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    import forgeml
    from forgeml.converters.hf import HFConverter

    def no_export(*a, **k):
        raise AssertionError("the ONNX export ran")

    monkeypatch.setattr(HFConverter, "convert", no_export)
    out = tmp_path / "out"
    result = forgeml.convert("zoo:tiny-llama", targets=["safetensors"], out_dir=out,
                             parity=forgeml.ParityOptions(batches=1))
    assert result.ok, result.manifest
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["plan"]["build_ir"] is False and "hf->onnx" in manifest["plan"]["skipped"]
    assert [s["kind"] for s in manifest["stages"]] == ["converter", "target"]
    assert manifest["stages"][1]["parity"]["rows"][0]["passed"]
    assert "stage plan" in (out / "report.md").read_text() and "stage plan" in (out / "report.html").read_text()


def test_reference_dtype_streams_for_gguf_and_follows_the_checkpoint_otherwise():
    from forgeml.targets.gguf.target import Config

    # gguf writes from the checkpoint on disk: the reference's weights may stay there (float32 math)
    assert plan_stages(build_config(targets=["gguf"]), _hf()).reference_dtype == "streamed"
    f32 = build_config(targets=["gguf"], target_configs={"gguf": Config(type="f32")})
    assert plan_stages(f32, _hf()).reference_dtype == "streamed"
    # safetensors writes the loaded model's own weights: it keeps the checkpoint's dtype in memory
    assert plan_stages(build_config(targets=["safetensors"]), _hf()).reference_dtype == "checkpoint"
    assert plan_stages(build_config(targets=["safetensors", "gguf"]), _hf()).reference_dtype == "checkpoint"


def test_cli_summary_of_a_reference_only_run(tmp_path, capsys):
    pytest.importorskip("transformers")
    from forgeml.cli.app import main

    out = tmp_path / "out"
    assert main(["convert", "zoo:tiny-llama", "--to", "safetensors", "--parity-batches", "0", "-o", str(out)]) == 0
    text = "".join(capsys.readouterr())
    assert "plan: no requested target" in text and "hf->onnx" in text and "PASS" in text


def test_default_passes_are_built_only_when_the_ir_is():
    """A run whose targets never read the IR builds no pass (nor imports them); if the plan exports
    after all, the defaults are built then, the same as forgeml.passes'."""
    from forgeml.passes import DEFAULT_PASSES
    from forgeml.pipeline.config import DEFAULT_PASS_NAMES

    assert DEFAULT_PASS_NAMES == DEFAULT_PASSES
    cfg = build_config(targets=["gguf"])
    assert cfg.passes == () and cfg.deferred_passes == DEFAULT_PASSES
    assert plan_stages(cfg, _hf()).skipped[1:] == DEFAULT_PASSES
    assert [p.name for p in cfg.with_passes().passes] == list(DEFAULT_PASSES)
    assert [p.name for p in build_config(targets=["onnx", "gguf"]).passes] == list(DEFAULT_PASSES)


def test_a_gguf_conversion_without_output_parity_imports_no_framework(tmp_path):
    """`parity.outputs` off: no reference, so neither torch, transformers nor the IR passes are imported."""
    import subprocess
    import sys

    pytest.importorskip("gguf")
    from models_zoo.hf_models import SPECS, checkpoint

    ckpt = checkpoint(SPECS["tiny-llama"])
    code = ("import sys, forgeml\n"
            f"r = forgeml.convert({str(ckpt)!r}, targets=['gguf'], out_dir={str(tmp_path / 'o')!r}, "
            "parity=forgeml.ParityOptions(outputs=False))\n"
            "assert r.ok, r.manifest\n"
            "print(sorted(m for m in ('torch', 'transformers', 'onnx_ir', 'sympy', 'llama_cpp') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    gguf = next(s for s in m["stages"] if s["name"] == "gguf")
    assert gguf.get("parity") is None and "not compared" in gguf["note"] and gguf["metadata"]["weight_check"]["passed"]
    assert m["plan"]["reference_dtype"] == "none" and m["ok"]
    import hashlib  # the manifest's digest was hashed while writing: it is the file's

    digest = hashlib.sha256((tmp_path / "o" / m["artifacts"]["gguf"]["path"]).read_bytes()).hexdigest()
    assert m["artifacts"]["gguf"]["sha256"] == digest


def test_output_parity_off_is_refused_for_ir_targets():
    import forgeml

    with pytest.raises(InputError, match="`parity.outputs` off applies to targets written from the source"):
        plan_stages(build_config(targets=["onnx", "gguf"], parity=forgeml.ParityOptions(outputs=False)), _hf())


def test_parity_batches_default_follows_the_plan():
    """No `parity.batches` given: 3 seeded batches when the IR is built, none when every target writes from
    the source (each position is a whole-LLM forward in two runtimes); a given count is kept."""
    import forgeml

    assert plan_stages(build_config(targets=["gguf"]), _hf()).parity_batches == 0
    assert plan_stages(build_config(targets=["onnx", "gguf"]), _hf()).parity_batches == 3
    given = build_config(targets=["gguf"], parity=forgeml.ParityOptions(batches=2))
    assert plan_stages(given, _hf()).parity_batches == 2 and plan_stages(given, _hf()).to_json()["parity_batches"] == 2
