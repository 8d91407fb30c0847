"""``forgeml reproduce OUT/manifest.json``: run a recorded conversion again and say what came out the same.

A CLI run is repeated from its exact command line (in the working directory it ran in, with ``-o``
pointing at the new directory); an API run from the manifest's ``run`` record. Every artifact is then
compared: byte-identical by sha256, or — where bytes differ — how far apart the two files' outputs are
on the same inputs (``forgeml parity OLD NEW``), so "not identical" always comes with a number.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

from forgeml.manifest import Manifest, RunRecord

from forgeml.errors import InputError

log = logging.getLogger(__name__)

# Side effects a rerun must not repeat: outputs elsewhere, and logging to MLflow (a second run, a second
# registered version).
_DROP_WITH_VALUE = {"-o", "--out", "--report", "--mlflow", "--mlflow-experiment", "--register", "--alias"}


def _rewrite_argv(argv: list[str], out_dir: Path) -> list[str]:
    """The recorded argv with the output directory replaced and side outputs (--report) dropped."""
    kept, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in _DROP_WITH_VALUE:
            skip = True
            continue
        if a.startswith(("--out=", "--report=", "--mlflow=", "--mlflow-experiment=", "--register=", "--alias=")) or (a.startswith("-o") and len(a) > 2 and not a.startswith("--")):
            continue
        if a == "--force":
            continue
        kept.append(a)
    return kept + ["-o", str(out_dir), "--force"]


def _rerun_cli(command: str, cwd: str, out_dir: Path) -> None:
    argv = shlex.split(command)
    if not argv or argv[0] != "forgeml" or len(argv) < 2 or argv[1] != "convert":
        raise InputError(f"reproduce: the recorded command is not a `forgeml convert` line: {command!r}")
    argv = _rewrite_argv(argv[1:], out_dir.resolve())
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "forgeml", *argv], cwd=cwd or None, env=env,
                          capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        raise InputError(f"reproduce: the rerun exited {proc.returncode}: {tail[0]}")


def _source_ref(source: str, cwd: Path | None) -> str:
    """The recorded source with a relative file path made absolute against the run's working directory."""
    if cwd is None or source.startswith("zoo:"):
        return source
    if source.startswith("python:"):
        parts = source.split(":")
        if len(parts) == 3 and parts[1].endswith(".py") and not Path(parts[1]).is_absolute():
            return ":".join([parts[0], str(cwd / parts[1]), parts[2]])
        return source
    return source if Path(source).is_absolute() else str(cwd / source)


def _rerun_api(run: RunRecord, out_dir: Path) -> None:
    from forgeml.converters import ImportOptions
    from forgeml.passes import PASSES
    from forgeml.pipeline.run import PipelineConfig, ToleranceOverrides
    from forgeml.pipeline.run import run as run_pipeline
    from forgeml.pipeline.sources import resolve
    from forgeml.targets import TARGETS
    from forgeml.pipeline.provenance import from_plain

    if run.source.startswith("<in-memory"):
        raise InputError("reproduce: the source was an in-memory model, which the manifest cannot bring back; "
                         "rerun your script")
    cwd = Path(run.cwd) if run.cwd and Path(run.cwd).is_dir() else None
    passes = []
    for p in run.passes:
        if p.name not in PASSES:
            raise InputError(f"reproduce: pass {p.name!r} is not known to this forgeml")
        cls = PASSES[p.name]
        passes.append(cls(from_plain(cls.Config, p.config, base=cwd)))
    target_configs = {}
    for name, entry in run.target_configs.items():
        config_cls = TARGETS[name].Config if name in TARGETS else None
        if config_cls is None:
            raise InputError(f"reproduce: target {name!r} has a recorded config but this forgeml's {name} "
                             "target takes none")
        target_configs[name] = from_plain(config_cls, entry.config, base=cwd)
    extra = {k: v for k, v in (("localize", run.localize), ("latency", run.latency),
                               ("generate_tokens", run.generate_tokens), ("held_out_samples", run.held_out_samples),
                               ("fail_on", run.fail_on)) if v is not None}
    config = PipelineConfig(targets=tuple(run.targets), passes=tuple(passes),
                            import_options=from_plain(ImportOptions, run.import_options, base=cwd),
                            parity_batches=run.parity_batches, seed=run.seed,
                            tolerance=from_plain(ToleranceOverrides, run.tolerance, base=cwd),
                            quantize=run.quantize, target_configs=target_configs,
                            command=f"forgeml reproduce (API run of {run.source})", **extra)
    run_pipeline(resolve(_source_ref(run.source, cwd)), config, out_dir.resolve(), force=True)


def reproduce(manifest_path: Path, out_dir: Path | None = None, *, force: bool = False) -> dict:
    manifest_path = Path(manifest_path)
    if manifest_path.is_dir():
        manifest_path = manifest_path / "manifest.json"
    try:
        old = Manifest.read(manifest_path)
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise InputError(f"reproduce: cannot read {manifest_path}: {e}") from e
    old_dir = manifest_path.parent
    out_dir = Path(out_dir) if out_dir else old_dir.with_name(old_dir.name + "-reproduced")
    if out_dir.resolve() == old_dir.resolve():
        raise InputError("reproduce: the new output directory must differ from the recorded one")
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise InputError(f"reproduce: {out_dir} exists and is not empty; pass `force` to replace it")
    command = old.command or ""
    run = old.run
    if command.startswith("forgeml convert"):
        how = "command line"
        _rerun_cli(command, (run.cwd if run else None) or "", out_dir)
    elif run:
        for data, what in ((old.calibration, "calibration data"), (old.user_inputs, "its own parity inputs")):
            if data:
                raise InputError(f"reproduce: this API run used {what}, which the manifest records only by "
                                 "hash; rerun your script")
        how = "run record (API)"
        _rerun_api(run, out_dir)
    else:
        raise InputError(f"reproduce: {manifest_path} records neither a command line nor a run record")
    new = Manifest.read(out_dir / "manifest.json")
    return _compare(old, new, old_dir, out_dir, how)


def _compare(old: Manifest, new: Manifest, old_dir: Path, new_dir: Path, how: str) -> dict:
    artifacts = {}
    for name, a in old.artifacts.items():
        b = new.artifacts.get(name)
        if b is None:
            artifacts[name] = {"status": "missing", "note": "the rerun did not produce this artifact"}
            continue
        theirs = {y.path: y.sha256 for y in b.extra_files or []}
        files = [(a.path, a.sha256, b.sha256)] + [(x.path, x.sha256, theirs.get(x.path)) for x in a.extra_files or []]
        if all(o == n for _, o, n in files):
            artifacts[name] = {"status": "identical", "sha256": a.sha256}
            continue
        entry = {"status": "differs", "old_sha256": a.sha256, "new_sha256": b.sha256,
                 "bytes": {"old": a.bytes, "new": b.bytes}}
        try:
            from forgeml.pipeline.compare import compare

            model = old.run.source if old.run and a.path.endswith(".safetensors") else None
            m = compare(str(old_dir / a.path), str(new_dir / b.path), model=model, profile="fp32")
            entry["max_abs"] = max((r.max_abs if r.max_abs is not None else 0.0) for r in m.stages[0].parity.rows)
            entry["within_fp32_tolerance"] = m.ok
            entry["status"] = "equivalent" if m.ok else "differs"
        except Exception as e:  # a format forgeml cannot run again is reported, not raised
            entry["note"] = f"outputs not compared: {type(e).__name__}: {e}"
        artifacts[name] = entry

    def calib(m: Manifest):
        return m.calibration.to_json() if m.calibration else None

    same_data = calib(old) == calib(new)
    ok = all(v["status"] in ("identical", "equivalent") for v in artifacts.values()) and same_data
    out = {"ok": ok, "how": how, "old_dir": str(old_dir), "new_dir": str(new_dir), "artifacts": artifacts,
           "verdict": {"old": old.ok, "new": new.ok}}
    if old.calibration or new.calibration:
        out["calibration"] = {"same": same_data, "old": calib(old), "new": calib(new)}
    return out
