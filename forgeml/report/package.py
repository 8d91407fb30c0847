"""The package files beside the artifacts: ``signature.json``, ``requirements-<target>.txt`` and
``model_card.md``, all from the run's manifest and signature (one call from the pipeline)."""

from __future__ import annotations

from pathlib import Path

from forgeml.fileio import write_bytes_atomic, write_json_atomic
from forgeml.manifest import Manifest
from forgeml.report.model_card import render_card
from forgeml.report.requirements import write_requirements
from forgeml.report.signature import labels_of, signature_record


def write_package(out_dir: Path, manifest: Manifest | dict, signature, source_model=None) -> None:
    record = signature_record(signature, labels_of(source_model))
    write_json_atomic(Path(out_dir) / "signature.json", record)
    write_requirements(out_dir, manifest)
    write_bytes_atomic(Path(out_dir) / "model_card.md", render_card(manifest, record).encode())
