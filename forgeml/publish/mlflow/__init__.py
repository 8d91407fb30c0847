"""MLflow: a committed package logged as MLflow models (onnx flavor, pyfunc wrappers for the rest),
with its signature, reports and parity metrics, optionally registered (``log.py``). ``package.py`` is
the one reader of the output directory; ``schema.py`` maps the signature; ``pyfunc.py`` and
``model_code.py`` are what MLflow loads back."""

from __future__ import annotations

from pathlib import Path

from forgeml.errors import InputError, PublishError, first_line
from forgeml.options import MlflowOptions
from forgeml.publish.mlflow.checks import check_options, loadable  # noqa: F401  (re-exported)


def publish(out_dir: Path, options: MlflowOptions):
    """Log ``out_dir`` (a committed forgeml output) to MLflow; returns ``Published``. Any failure is one
    ``PublishError`` line naming the tracking URI and how to log the package again; the files on disk
    are never touched."""
    from forgeml.publish.mlflow.log import log_package

    check_options(options)
    try:
        _reachable(options.tracking_uri)
        return log_package(Path(out_dir), options)
    except InputError:
        raise
    except Exception as e:  # MLflow raises many types (MlflowException, requests', sqlalchemy's …)
        uri = options.tracking_uri or _default_uri()
        raise PublishError(
            f"MLflow logging to {uri} failed: {first_line(e, with_type=True, root=True)}. The package in {out_dir} "
            f"is complete; once the tracking server or store answers, log it again with `publish_mlflow` {out_dir}"
            + (f" `mlflow.tracking_uri` {uri}" if options.tracking_uri else "")) from e


def _reachable(uri: str | None, timeout: float = 5.0) -> None:
    """An http(s) tracking server that refuses connections fails here in seconds, not after MLflow's
    retries with backoff (minutes)."""
    import socket
    from urllib.parse import urlsplit

    if not uri or not uri.startswith(("http://", "https://")):
        return
    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    with socket.create_connection((parts.hostname, port), timeout=timeout):
        pass


def _default_uri() -> str:
    try:
        import mlflow

        return mlflow.get_tracking_uri()
    except Exception:
        return "MLflow's default tracking URI"
