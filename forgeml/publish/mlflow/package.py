"""The package as the MLflow publisher sees it, read from the output directory in one place
(``read_package``): which artifacts it holds and with what runtime, its signature, the parity numbers
per stage and output, and a few facts for run parameters. Everything else here reads this record,
never the manifest's keys."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from forgeml.errors import InputError

# The parity row fields that become MLflow metrics (numbers only; verdicts become 0/1).
PARITY_METRICS = ("max_abs", "max_rel", "mean_abs", "cosine", "centered_cosine", "top1", "top1_margin",
                  "exact_match", "atol_needed")
REPORTS = ("manifest.json", "signature.json", "model_card.md", "report.md", "report.html")


@dataclass(frozen=True)
class PackagedArtifact:
    target: str
    path: Path  # the main file, absolute
    files: tuple[Path, ...]  # every file of it (main included), absolute
    runtime: str
    requirements: tuple[str, ...] = ()  # pinned lines of requirements-<target>.txt


@dataclass(frozen=True)
class Package:
    root: Path
    source: str  # the source reference (zoo:cnn, a path …)
    ok: bool
    forgeml_version: str
    artifacts: tuple[PackagedArtifact, ...]  # in ``targets`` order
    signature: dict  # signature.json's record (inputs, outputs, labels)
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    reports: tuple[Path, ...] = ()  # manifest, signature, model card, reports, requirements files


def metric_key(*parts: str) -> str:
    """An MLflow metric name from parts: MLflow allows letters, digits, ``_ - . / :`` and spaces."""
    return "/".join(re.sub(r"[^A-Za-z0-9_.\- :]", "_", p.replace("->", "_to_")) for p in parts)


def read_package(root: Path) -> Package:
    """The one reader of a committed output directory's manifest.json (as the typed ``Manifest``) and
    signature.json."""
    from forgeml.manifest import Manifest

    root = Path(root)
    try:
        m = Manifest.read(root / "manifest.json")
        if (root / "signature.json").is_file():
            signature = json.loads((root / "signature.json").read_text())
        else:
            sig = m.signature.to_json()
            signature = {"inputs": sig["inputs"], "outputs": sig["outputs"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{root}: not a forgeml output directory with a readable manifest.json ({e})") from e
    runtimes = {st.name: st.runtime or "" for st in m.of_kind("target")}
    artifacts = []
    for target, entry in m.artifacts.items():
        files = tuple(root / f.path for f in entry.files())
        req = root / f"requirements-{target}.txt"
        lines = tuple(ln.strip() for ln in req.read_text().splitlines()
                      if ln.strip() and not ln.startswith("#")) if req.is_file() else ()
        artifacts.append(PackagedArtifact(target, files[0], files, runtimes.get(target, ""), lines))
    metrics: dict[str, float] = {}
    for st in m.stages:
        if st.parity is not None and st.parity.passed is not None:
            metrics[metric_key("parity", st.name, "passed")] = float(bool(st.parity.passed))
        for row in st.parity.rows if st.parity is not None else ():
            for name in PARITY_METRICS:
                v = row.metric(name)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    metrics[metric_key("parity", st.name, row.output, name)] = float(v)
        median = st.latency.median_ms if st.latency is not None else None
        if isinstance(median, (int, float)):
            metrics[metric_key("latency_ms", st.name)] = float(median)
    for target, entry in m.artifacts.items():
        metrics[metric_key("bytes", target)] = float(entry.bytes)
    source = m.source
    params = {"forgeml_version": m.forgeml_version, "source": source.ref or "",
              "source_sha256": source.sha256 or "", "framework": source.framework or "",
              "route": source.route or "", "precision": m.precision or "",
              "targets": ",".join(m.artifacts), "opset": m.opset, "quantize": m.quantize}
    reports = tuple(root / n for n in REPORTS if (root / n).is_file()) + tuple(sorted(root.glob("requirements-*.txt")))
    return Package(root, source.ref or "", bool(m.ok), m.forgeml_version, tuple(artifacts), signature, metrics,
                   {k: str(v)[:500] for k, v in params.items() if v not in (None, "")}, reports)
