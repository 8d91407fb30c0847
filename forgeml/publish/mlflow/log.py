"""Logging a committed package to MLflow: to the active run, or to a new one this opens and closes.

Per artifact, one MLflow model named after its target: the onnx flavor for ``.onnx`` (MLflow runs it
in onnxruntime), a pyfunc wrapper (``pyfunc.py``) for the others; each with the package's signature as
a ``ModelSignature`` and its ``requirements-<target>.txt`` as pip requirements. The run gets the parity
numbers as metrics (``parity/<stage>/<output>/<metric>``, ``latency_ms/<stage>``), a few facts as
params, and manifest, signature, model card, reports and requirements under ``forgeml/``. With
``register``, the first artifact becomes a new version of that registered model, and ``alias`` points
at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from forgeml.options import MlflowOptions
from forgeml.publish.mlflow.checks import check_options, loadable
from forgeml.publish.mlflow.package import Package, PackagedArtifact, read_package
from forgeml.publish.mlflow.pyfunc import WHAT

_CODE = Path(__file__).with_name("model_code.py")


@dataclass(frozen=True)
class Published:
    """Where the package went: the tracking URI, the run, each target's model URI, and the registered
    version (``models:/NAME/VERSION`` and ``models:/NAME@ALIAS`` when registered)."""

    tracking_uri: str
    run_id: str
    models: dict[str, str]
    registered: str | None = None
    version: str | None = None
    alias_uri: str | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def log_package(out_dir: Path, options: MlflowOptions) -> Published:
    """Log the package; MLflow's own prints ("Successfully registered …") go to stderr, so stdout stays
    the caller's (``--json``)."""
    import contextlib
    import sys

    with contextlib.redirect_stdout(sys.stderr):
        return _log_package(out_dir, options)


def _log_package(out_dir: Path, options: MlflowOptions) -> Published:
    import mlflow

    package = read_package(out_dir)
    previous = _tracking_uri_state()
    active = mlflow.active_run()
    if active is not None and options.tracking_uri and options.tracking_uri != mlflow.get_tracking_uri():
        from forgeml.errors import InputError

        raise InputError(f"`mlflow.tracking_uri` {options.tracking_uri} is not the active run's "
                         f"({mlflow.get_tracking_uri()}); end that run, or leave `mlflow.tracking_uri` out to log to it")
    try:
        if active is None and options.tracking_uri:
            mlflow.set_tracking_uri(options.tracking_uri)
        run = active or mlflow.start_run(run_name=f"forgeml {package.source}".strip(),
                                         experiment_id=_experiment_id(mlflow, options))
        try:
            published = _log(mlflow, package, options, run.info.run_id)
        except BaseException:
            if active is None:
                mlflow.end_run(status="FAILED")
            raise
        if active is None:
            mlflow.end_run()
        return published
    finally:
        _restore_tracking_uri(previous)


def _experiment_id(mlflow, options: MlflowOptions) -> str | None:
    """The experiment of a new run, without touching MLflow's process-wide active experiment:
    ``experiment`` by name (created when absent); with only a tracking URI, that store's default
    experiment ("0"), since an experiment the caller activated belongs to another store; else None
    (MLflow's own choice: the active experiment, MLFLOW_EXPERIMENT_NAME/ID, the default)."""
    if options.experiment:
        client = mlflow.MlflowClient()
        found = client.get_experiment_by_name(options.experiment)
        return found.experiment_id if found is not None else client.create_experiment(options.experiment)
    return "0" if options.tracking_uri else None


def _log(mlflow, package: Package, options: MlflowOptions, run_id: str) -> Published:
    from forgeml.publish.mlflow.schema import model_signature

    check_options(options, [a.target for a in package.artifacts])
    mlflow.log_params(package.params)
    mlflow.set_tags({"forgeml.verdict": "PASS" if package.ok else "FAIL", "forgeml.source": package.source})
    if package.metrics:
        mlflow.log_metrics(package.metrics)
    for path in package.reports:
        mlflow.log_artifact(str(path), artifact_path="forgeml")
    signature = model_signature(package.signature)
    models: dict[str, str] = {}
    registered = version = None
    for artifact in package.artifacts:
        if not loadable(artifact.target):  # kept as files under the run: no model MLflow could load
            for f in artifact.files:
                where = f.parent.relative_to(package.root).as_posix()
                mlflow.log_artifact(str(f), artifact_path=artifact.target + ("" if where == "." else "/" + where))
            continue
        register = options.register if not models else None
        info = _log_model(mlflow, package, artifact, signature, register)
        models[artifact.target] = info.model_uri
        if register:
            registered, version = register, str(info.registered_model_version)
    alias_uri = None
    if registered and options.alias:
        mlflow.MlflowClient().set_registered_model_alias(registered, options.alias, version)
        alias_uri = f"models:/{registered}@{options.alias}"
    return Published(mlflow.get_tracking_uri(), run_id, models, registered, version, alias_uri)


def _log_model(mlflow, package: Package, artifact: PackagedArtifact, signature, register: str | None):
    """One artifact as an MLflow model named after its target."""
    from importlib.metadata import version

    requirements = list(artifact.requirements)
    tags = {"forgeml.target": artifact.target, "forgeml.runtime": artifact.runtime}
    if artifact.path.suffix == ".onnx" and artifact.target == "onnx":
        import onnx

        from forgeml.formats import onnx_file

        model = onnx_file.load(artifact.path)  # the checked loader; external data inlined for MLflow
        return mlflow.onnx.log_model(model, name=artifact.target, signature=signature,
                                     pip_requirements=requirements + [f"onnx=={version('onnx')}"],
                                     registered_model_name=register, tags=tags,
                                     save_as_external_data=onnx.ModelProto.ByteSize(model) >= 2**31 - 1 - (64 << 20),
                                     onnx_execution_providers=["CPUExecutionProvider"])
    root = package.root
    if artifact.target == "triton":  # the whole repository: config.pbtxt and its version folders
        repo = artifact.path.relative_to(root).parts[0]
        extra = {"model_repository": str(root / repo)}
        config = next(f for f in artifact.files if f.name == "config.pbtxt")
        file = config.relative_to(root).as_posix()
    else:
        extra = {f"file{i}": str(f) for i, f in enumerate(artifact.files)}
        file = artifact.path.name
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="forgeml-mlflow-") as tmp:
        what = Path(tmp) / WHAT  # which target opens which file (not model_config: MLflow logs that as run params)
        what.write_text(json.dumps({"target": artifact.target, "file": file}))
        return mlflow.pyfunc.log_model(
            name=artifact.target, python_model=str(_CODE), signature=signature,
            artifacts={"signature": str(root / "signature.json"), "forgeml": str(what), **extra},
            pip_requirements=requirements + [f"forgeml=={package.forgeml_version}"],
            registered_model_name=register, tags=tags)


def _tracking_uri_state():
    import os

    from mlflow.tracking._tracking_service import utils

    return utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")


def _restore_tracking_uri(previous) -> None:
    """Leave the caller's process as it was: the URI a run was given is not the caller's default (MLflow
    keeps it in a module global and in MLFLOW_TRACKING_URI, for its subprocesses)."""
    import os

    import mlflow
    from mlflow.tracking._tracking_service import utils

    uri, env = previous
    if utils._tracking_uri != uri:
        mlflow.set_tracking_uri(uri)
    if env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = env
