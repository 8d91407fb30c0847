"""The typed manifest writes exactly the JSON it reads: real conversions, manifests written before the
records existed, and keys a newer forgeml adds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from forgeml.manifest import Manifest, ParityRecord, StageRecord
from forgeml.parity.measure import ParityRow

DATA = Path(__file__).parent / "data"


def _dumped(obj) -> str:
    """The bytes ``fileio.write_json_atomic`` writes for ``obj``."""
    from forgeml.fileio import _json_default

    return json.dumps(obj, indent=2, default=_json_default) + "\n"


@pytest.mark.parametrize("name", ["manifest_main_mlp_int8.json", "manifest_main_sk_iris.json"])
def test_a_manifest_written_before_the_records_reads_back_byte_for_byte(name):
    """Written by the dict-assembling pipeline (zoo:mlp --quantize int8 --to onnx,safetensors; zoo:sk_iris)."""
    raw = (DATA / name).read_text()
    m = Manifest.from_json(json.loads(raw))
    assert _dumped(m.to_json()) == raw
    assert m.stages and all(isinstance(s, StageRecord) for s in m.stages)
    checked = m.checked()
    assert checked and all(isinstance(r, ParityRow) for s in checked for r in s.parity.rows)
    assert all(a.sha256 and a.bytes > 0 for a in m.artifacts.values())


@pytest.mark.parametrize("zoo", ["mlp", "sk_iris"])
def test_real_conversions_round_trip(zoo_runs, zoo):
    conv = zoo_runs(zoo)
    raw = (conv.out_dir / "manifest.json").read_text()
    assert _dumped(conv.record.to_json()) == raw  # what the run holds is what it wrote
    again = Manifest.from_json(json.loads(raw))
    assert _dumped(again.to_json()) == raw
    assert again.to_json() == conv.manifest
    assert [s.name for s in again.checked()] == [name for name, _ in conv.parity.stages]
    for (name, parity), st in zip(conv.parity.stages, again.checked(), strict=True):
        assert st.name == name and st.parity.rows == parity.rows and st.parity.passed == parity.passed


def test_parity_inputs_are_recorded_by_source(zoo_runs):
    """example, generated and user batches each by hash: the hash is the data's, so it can tell them apart."""
    from forgeml.pipeline.provenance import data_hash

    m = zoo_runs("mlp").record
    pd = m.parity_data
    assert pd.example.batches == 1 and pd.generated.batches == m.run.parity_batches and pd.user is None
    assert pd.example.sha256 != pd.generated.sha256
    md = (zoo_runs("mlp").out_dir / "report.md").read_text()
    provenance = md.split("## Provenance", 1)[1].split("## Tools", 1)[0]
    assert pd.example.sha256 in provenance and pd.generated.sha256 in provenance
    if m.project is not None:  # run inside a git checkout (this repository's, normally)
        assert m.project.commit in provenance
    x = {"x": np.zeros((2, 3), np.float32)}
    assert data_hash([x])["sha256"] != data_hash([{"x": np.ones((2, 3), np.float32)}])["sha256"]
    assert data_hash([x])["sha256"] != data_hash([{"x": np.zeros((3, 2), np.float32)}])["sha256"]  # shape counts


def test_unknown_keys_are_kept_where_they_were():
    """A newer forgeml's keys, at every level, survive a read and a write in their places."""
    raw = {"forgeml_version": "9.0", "future_top": {"a": [1, 2]}, "ok": False,
           "source": {"kind": "onnx", "ref": "m.onnx", "new_source_key": 1, "sha256": "ab", "framework": "ort"},
           "opset": None,
           "stages": [{"kind": "target", "name": "x", "surprise": True, "error": "boom", "seconds": 0.1},
                      {"name": "onnx", "kind": "converter",
                       "parity": {"passed": False, "reference": "torch", "profile": "fp32",
                                  "tolerance": {"name": "fp32", "atol": 1e-4, "rtol": 1e-3, "min_cosine": 0.999,
                                                "min_new": 3},
                                  "batches": 4, "rows": [{"output": "y", "passed": False, "problem": "p",
                                                          "max_abs": 0.5, "new_metric": 0.25}]},
                       "divergence": {"found": True, "node": "n", "op": "Add", "metrics": {"max_abs": 1.0},
                                      "suspects": [{"node": "a", "op": "Mul", "why": "x"}]}}],
           "artifacts": {"onnx": {"path": "m.onnx", "sha256": "cd", "bytes": 3, "signed_by": "someone"}},
           "tools": {}, "errors": {"x": "boom"}, "warnings": [], "new_list": [{"k": 1}]}
    m = Manifest.from_json(json.loads(json.dumps(raw)))
    assert json.dumps(m.to_json()) == json.dumps(raw)
    assert m.extra == {"future_top": {"a": [1, 2]}, "new_list": [{"k": 1}]}
    assert m.stages[1].parity.rows[0].extra == {"new_metric": 0.25}
    assert m.stages[1].divergence.suspects[0].extra == {"why": "x"}
    assert m.artifacts["onnx"].extra == {"signed_by": "someone"}
    assert m.stages[0].error == "boom" and m.stage("onnx").parity.tolerance.extra == {"min_new": 3}


def test_a_record_built_in_code_writes_only_what_it_has():
    st = StageRecord("onnx", "target", artifact="model.onnx",
                     parity=ParityRecord(passed=True, rows=[ParityRow(output="y", passed=True, max_abs=0.0)]))
    assert st.to_json() == {"name": "onnx", "kind": "target", "artifact": "model.onnx",
                            "parity": {"passed": True, "tolerance": {}, "rows": [
                                {"output": "y", "passed": True, "max_abs": 0.0}]}}
    m = Manifest(forgeml_version="1", ok=True)
    assert m.to_json() == {"forgeml_version": "1", "ok": True, "source": {}, "stages": [], "artifacts": {},
                           "tools": {}}
    assert m.keep_null("opset").to_json()["opset"] is None


def test_reports_read_a_manifest_or_its_json_alike():
    from forgeml.report import gating, html, markdown

    raw = json.loads((DATA / "manifest_main_mlp_int8.json").read_text())
    m = Manifest.from_json(raw)
    assert markdown.render(raw) == markdown.render(m)
    assert html.render(raw) == html.render(m)
    assert gating.summary(raw) == gating.summary(m)


def test_report_md_provenance_shows_commit_and_data_hashes():
    from forgeml.manifest import DataHash, ParityData, ProjectRecord
    from forgeml.report.markdown import render

    m = Manifest.from_json(json.loads((DATA / "manifest_main_mlp_int8.json").read_text()))
    assert "## Provenance" not in render(m)  # nothing recorded, no section
    m.project = ProjectRecord("0123abcd", dirty=True)
    m.calibration = DataHash(16, "c" * 64)
    m.parity_data = ParityData(DataHash(1, "e" * 64), DataHash(3, "g" * 64), DataHash(2, "u" * 64))
    section = render(m).split("## Provenance", 1)[1].split("## Tools", 1)[0]
    assert "`0123abcd` (uncommitted changes)" in section
    assert f"calibration data: 16 batch(es), sha256 `{'c' * 64}`" in section
    for label, ch, n in (("example", "e", 1), ("generated", "g", 3), ("user", "u", 2)):
        assert f"parity inputs ({label}): {n} batch(es), sha256 `{ch * 64}`" in section
