"""MLflow: a package logged to a real tracking server on loopback (sqlite store, local artifact root),
registered, aliased and loaded back with ``mlflow.pyfunc``; its outputs equal the artifact's own run
in its runtime. Also a ``sqlite:///`` store without a server, and the failure path (one line, nothing
lost). The server boots in the background while the store-only tests run, so its start-up costs little.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mlflow", reason="needs forgeml[mlflow]")

import forgeml  # noqa: E402
from forgeml.cli.app import main  # noqa: E402
from forgeml.errors import InputError, PublishError  # noqa: E402
from forgeml.targets import TARGETS  # noqa: E402
from forgeml.targets.base import OpenContext  # noqa: E402

HAS_TFLITE = all(importlib.util.find_spec(m) for m in ("onnx2tf", "ai_edge_litert"))
_BOOT_S = 300  # a loaded 2-core box has taken over a minute; an idle one takes seconds


class Server:
    """``mlflow server`` on a free loopback port, started at once and waited for only when needed."""

    def __init__(self, root: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        mlflow_cli = Path(sys.executable).with_name("mlflow")
        cmd = [str(mlflow_cli) if mlflow_cli.exists() else sys.executable, *([] if mlflow_cli.exists() else ["-m", "mlflow"]),
               "server", "--backend-store-uri", f"sqlite:///{root / 'store.db'}",
               "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", "1"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, cwd=root)

    def wait(self) -> str:
        deadline = time.monotonic() + _BOOT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return self.url
            except OSError:
                time.sleep(0.3)
        pytest.fail(f"mlflow server not healthy after {_BOOT_S} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the server and its uvicorn worker
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module", autouse=True)
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("mlflow-server"))
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No tracking URI from the environment, and MLflow's default ./mlruns under tmp_path."""
    for k in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.chdir(tmp_path)


def _tiny_onnx(path: Path) -> Path:
    """y = relu(x @ W + b): an ONNX source, so the store tests import no framework."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")
    vi = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["z"]),
                               helper.make_node("Relu", ["z"], ["y"])], "tiny",
                              [vi("x", TensorProto.FLOAT, [2, 4])], [vi("y", TensorProto.FLOAT, [2, 3])], [w, b])
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


def _ort(path: Path, inputs: dict) -> dict:
    """The artifact in onnxruntime directly (no MLflow)."""
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, inputs)))


def test_sqlite_store_without_a_server(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    r = forgeml.convert(str(_tiny_onnx(tmp_path / "tiny.onnx")), targets=["onnx"], out_dir=tmp_path / "out",
                        mlflow=forgeml.MlflowOptions(tracking_uri=uri, experiment="forgeml-test", register="tiny",
                                                     alias="candidate"))
    assert r.ok and r.published.registered == "tiny" and r.published.alias_uri == "models:/tiny@candidate"
    assert mlflow.get_tracking_uri() != uri  # the caller's process is left as it was
    client = mlflow.MlflowClient(uri)
    run = client.get_run(r.published.run_id)
    # every parity number of the manifest is a metric, with its value
    for st in r.manifest["stages"]:
        for row in st["parity"]["rows"]:
            key = f"parity/{st['name'].replace('->', '_to_')}/{row['output']}/max_abs"
            assert run.data.metrics[key] == row["max_abs"], key
            assert run.data.metrics[key.replace("max_abs", "cosine")] == row["cosine"]
    assert run.data.params["source"] == r.manifest["source"]["ref"] and run.data.tags["forgeml.verdict"] == "PASS"
    logged = {f.path for f in client.list_artifacts(run.info.run_id, "forgeml")}
    assert {"forgeml/manifest.json", "forgeml/signature.json", "forgeml/model_card.md",
            "forgeml/requirements-onnx.txt"} <= logged
    x = {"x": np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)}
    with _tracking(uri):
        model = mlflow.pyfunc.load_model("models:/tiny@candidate")
        got = model.predict(x)
        info = mlflow.models.get_model_info("models:/tiny@candidate")
    np.testing.assert_array_equal(got["y"], _ort(r.out_dir / "model.onnx", x)["y"])
    assert info.flavors.keys() >= {"onnx", "python_function"}
    sig = info.signature.to_dict()
    assert json.loads(sig["inputs"]) == [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [2, 4]},
                                          "name": "x"}]
    # inside the caller's own run: logged there, and the run stays open (it is the caller's to end)
    with _tracking(uri), mlflow.start_run() as mine:
        with pytest.raises(InputError, match="is not the active run's"):
            forgeml.publish_mlflow(r.out_dir, f"sqlite:///{tmp_path / 'other.db'}")
        again = forgeml.publish_mlflow(r.out_dir)
        assert again.run_id == mine.info.run_id and mlflow.active_run().info.run_id == mine.info.run_id
    assert "onnx" in again.models and client.get_run(mine.info.run_id).data.metrics == run.data.metrics


def test_a_logging_failure_is_one_line_and_keeps_the_package(tmp_path, capsys):
    out = tmp_path / "out"
    with socket.socket() as s:  # a port nothing listens on: the server is down
        s.bind(("127.0.0.1", 0))
        bad = f"http://127.0.0.1:{s.getsockname()[1]}"
    code = main(["convert", str(_tiny_onnx(tmp_path / "tiny.onnx")), "-o", str(out), "--mlflow", bad])
    err = capsys.readouterr().err
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("forgeml: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    line = " ".join(err[err.index("forgeml: error:"):].split())  # rich may wrap a long line
    assert bad in line and f"forgeml publish {out} --mlflow {bad}" in line and "`" not in line
    manifest = json.loads((out / "manifest.json").read_text())
    assert all((out / a["path"]).is_file() for a in manifest["artifacts"].values())
    with pytest.raises(PublishError, match="is complete; once the tracking server or store answers"):
        forgeml.publish_mlflow(out, bad)
    store = tmp_path / "a-file"
    store.write_text("")  # a sqlite store under a file, not a directory: fails inside MLflow itself
    with pytest.raises(PublishError, match="MLflow logging to sqlite:///.*a-file/store.db failed"):
        forgeml.publish_mlflow(out, f"sqlite:///{store}/store.db")


def test_options_are_checked_before_converting(tmp_path, capsys):
    src = str(tmp_path / "never-read.onnx")
    assert main(["convert", src, "-o", str(tmp_path / "o"), "--mlflow", "--register", "m", "--alias", ""]) == 2
    assert "--alias is empty" in capsys.readouterr().err
    assert main(["convert", src, "-o", str(tmp_path / "o"), "--register", "m"]) == 2
    assert "add --mlflow" in capsys.readouterr().err
    assert main(["convert", src, "--to", "safetensors", "-o", str(tmp_path / "o"), "--mlflow", "--register", "m"]) == 2
    assert "none of the --to (safetensors) loads as an MLflow model on its own" in capsys.readouterr().err
    with pytest.raises(InputError, match="`mlflow.alias` names an alias .* give `mlflow.register`"):
        forgeml.convert(src, out_dir=tmp_path / "o", mlflow=forgeml.MlflowOptions(alias="prod"))
    assert not (tmp_path / "o").exists()


def test_server_round_trip_registers_and_loads_back(server, tmp_path, capsys):
    """The issue's command against a live server: every artifact logged as a model, the first registered
    with an alias; what MLflow loads back computes exactly what the artifact computes in its runtime."""
    import mlflow

    targets = "onnx,tflite,triton" if HAS_TFLITE else "onnx,triton"
    out = tmp_path / "out"
    url = server.wait()
    code = main(["convert", "zoo:cnn", "--to", targets, "-o", str(out), "--parity-batches", "0",
                 "--mlflow", url, "--register", "cnn", "--alias", "prod", "--json"])
    cap = capsys.readouterr()
    assert code == 0, cap.err[-3000:]
    published = json.loads(cap.out)["mlflow"]
    assert published["alias_uri"] == "models:/cnn@prod" and set(published["models"]) == set(targets.split(","))
    x = {"x": np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32)}
    with _tracking(url):
        registered = mlflow.pyfunc.load_model("models:/cnn@prod")
        assert registered.metadata.flavors.keys() >= {"onnx"}
        np.testing.assert_array_equal(registered.predict(x)["logits"], _ort(out / "model.onnx", x)["logits"])
        triton = mlflow.pyfunc.load_model(published["models"]["triton"]).predict(x)
        np.testing.assert_array_equal(triton["logits"], _ort(out / "model_repository/cnn/1/model.onnx", x)["logits"])
        if HAS_TFLITE:  # a pyfunc wrapper over a non-ONNX file: the TFLite interpreter, as forgeml runs it
            got = mlflow.pyfunc.load_model(published["models"]["tflite"]).predict(x)["logits"]
            want = TARGETS["tflite"].open(out / "model.tflite", OpenContext()).runner(x)["logits"]
            np.testing.assert_allclose(got, want, rtol=0, atol=np.finfo(np.float32).eps * np.abs(want).max())
        assert mlflow.MlflowClient().get_model_version_by_alias("cnn", "prod").version == published["version"]


class _tracking:
    """Point MLflow's fluent API at ``uri`` for a block (the env var; nothing global left behind)."""

    def __init__(self, uri: str):
        self.uri = uri

    def __enter__(self):
        import mlflow

        mlflow.set_tracking_uri(self.uri)

    def __exit__(self, *exc):
        import mlflow

        mlflow.set_tracking_uri(None)
