"""``report diff OLD NEW``'s semver verdict: the contract from the two signatures, and each artifact
both releases ship rerun on one shared input set (OLD's outputs the reference, NEW judged by the
artifact's parity profile), because two manifests' parity numbers were measured against different
references and cannot show that outputs moved.
"""

from __future__ import annotations

import json
from pathlib import Path

from forgeml.errors import ForgeError, InputError, first_line
from forgeml.ir import Signature
from forgeml.manifest import Manifest, SignatureRecord


def read_release(path: Path) -> tuple[Path, Manifest, SignatureRecord]:
    """(directory, manifest, signature record) of a run directory or its manifest.json."""
    path = Path(path)
    manifest_path = path / "manifest.json" if path.is_dir() else path
    try:
        manifest = Manifest.read(manifest_path)
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise InputError(f"report diff: cannot read {manifest_path}: {e}") from e
    sig_path = manifest_path.parent / "signature.json"
    signature = manifest.signature or SignatureRecord()
    if sig_path.is_file():
        try:
            signature = SignatureRecord.from_json(json.loads(sig_path.read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as e:
            raise InputError(f"report diff: cannot read {sig_path}: {e}") from e
    return manifest_path.parent, manifest, signature


def rerun(old_dir: Path, old: Manifest, new_dir: Path, new: Manifest, *, batches: int = 3,
          seed: int = 0) -> list[dict]:
    """Each artifact both releases ship, OLD's file and NEW's file on the same inputs."""
    from forgeml.parity.inputs import parity_inputs
    from forgeml.parity.measure import measure, run_reference
    from forgeml.parity.tolerances import PROFILES, profile_for
    from forgeml.pipeline.compare import opener, synth_example
    from forgeml.targets.base import OpenContext

    out = []
    for name in [n for n in old.artifacts if n in new.artifacts]:
        a_path, b_path = old_dir / old.artifacts[name].path, new_dir / new.artifacts[name].path
        row: dict = {"target": name, "passed": None}
        target = opener(a_path)
        if not (a_path.is_file() and b_path.is_file()):
            out.append(row | {"why": "artifact file missing"})
            continue
        if target is None:
            out.append(row | {"why": f"no target opens {a_path.suffix} files on their own"})
            continue
        try:
            a, b = target.open(a_path, OpenContext()), target.open(b_path, OpenContext())
        except ForgeError as e:
            out.append(row | {"why": first_line(e)})
            continue
        sig: Signature | None = a.signature or b.signature
        if sig is None:
            out.append(row | {"why": "neither file states its signature"})
            continue
        precision = b.precision if b.precision in PROFILES else "fp32"
        tol = profile_for(precision)
        sets = parity_inputs(a.example_inputs or synth_example(sig, seed), sig, batches=batches, seed=seed,
                             dynamic_batch=False)
        ref = run_reference(a.runner, sets, f"OLD {a_path}")
        parity = measure(ref, b.runner, sets, tol, reference=f"OLD {a_path.name}", output_names=sig.output_names)
        worst = {}
        for r in parity.rows:
            for m in ("max_abs", "cosine"):
                if r.metric(m) is not None:
                    worst[f"{r.output} {m}"] = r.metric(m)
        out.append(row | {"passed": parity.passed, "profile": tol.name, "batches": len(sets), "worst": worst,
                          "rows": [r.to_json() for r in parity.rows]})
    return out


def release_diff(old_path: Path, new_path: Path) -> dict:
    """The manifest diff plus ``semver`` (MAJOR | MINOR | PATCH), ``contract`` and ``reruns``."""
    from forgeml.report.diff import contract_changes, diff, semver

    old_dir, old, old_sig = read_release(old_path)
    new_dir, new, new_sig = read_release(new_path)
    d = diff(old, new)
    d["contract"] = contract_changes(old_sig, new_sig)
    d["reruns"] = [] if d["contract"] else rerun(old_dir, old, new_dir, new)
    d["semver"] = semver(d["contract"], d["reruns"])
    d["outputs_checked"] = any(r["passed"] is not None for r in d["reruns"])  # False: PATCH by contract alone
    return d
