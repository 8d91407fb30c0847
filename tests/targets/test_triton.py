"""The triton target: a model repository whose config.pbtxt Triton's own schema accepts and whose model
file, loaded from the repository, takes exactly what the config declares."""

from __future__ import annotations

import pytest

import forgeml
from forgeml.errors import TargetError
from forgeml.targets.triton import config as pbtxt

# Every cheap zoo model; the default suite runs one per converter kind, the rest are marked slow.
FAST = ["cnn", "sk_iris"]
CHEAP = ["mlp", "transformer", "sk_digits", "sk_diabetes", "sk_breast_cancer", "keras_cnn", "keras_two_inputs"]


def _schema():
    pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="pip install 'forgeml[triton]'")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format, model_config_pb2


def _check_repository(name: str, dynamic: bool, tmp_path):
    text_format, mc = _schema()
    out = tmp_path / f"{name}-{'dyn' if dynamic else 'fixed'}"
    conv = forgeml.convert(f"zoo:{name}", targets=["triton"], out_dir=out, passes=[],
                           options=forgeml.ImportOptions(dynamic_batch=dynamic))
    assert conv.ok and not conv.errors, conv.errors
    repo = out / "model_repository" / name
    assert (repo / "1" / "model.onnx").is_file()
    msg = text_format.Parse((repo / "config.pbtxt").read_text(), mc.ModelConfig())
    assert msg.name == name and msg.platform == "onnxruntime_onnx"
    sig = conv.ir.signature
    batched = pbtxt.batch_is_dynamic(sig)
    assert batched == msg.HasField("dynamic_batching") == (msg.max_batch_size > 0)
    if dynamic and name.startswith(("mlp", "cnn", "transformer")):
        assert batched  # torch exports mark the batch axis symbolic for every input and output
    for specs, declared in ((sig.inputs, msg.input), (sig.outputs, msg.output)):
        assert [s.name for s in specs] == [t.name for t in declared]
        for s, t in zip(specs, declared):
            assert mc.DataType.Name(t.data_type) == pbtxt.TRITON_TYPES[s.dtype]
            shape = s.shape[1:] if batched else s.shape
            assert list(t.dims) == [d if isinstance(d, int) else -1 for d in shape]
    assert conv.manifest["artifacts"]["triton"]["path"] == f"model_repository/{name}/1/model.onnx"
    stage = next(s for s in conv.manifest["stages"] if s["name"] == "triton")
    assert stage["metadata"]["config_validated"].startswith("tritonclient")
    assert stage["parity"]["passed"]


@pytest.mark.parametrize("dynamic", [False, True], ids=["fixed", "dynamic"])
@pytest.mark.parametrize("name", FAST)
def test_config_for_zoo_model(name, dynamic, tmp_path):
    _check_repository(name, dynamic, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("dynamic", [False, True], ids=["fixed", "dynamic"])
@pytest.mark.parametrize("name", CHEAP)
def test_config_for_every_cheap_zoo_model(name, dynamic, tmp_path):
    if name == "sk_breast_cancer" and dynamic:
        pytest.skip("the source (ColumnTransformer over a DataFrame) fails on varied batch sizes before any target")
    if name.startswith("keras"):
        pytest.importorskip("tensorflow")
    _check_repository(name, dynamic, tmp_path)


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    """zoo:mlp through the CLI with a dynamic batch, --triton-name and --triton-max-batch."""
    from forgeml.cli.app import main

    out = tmp_path_factory.mktemp("triton") / "o"
    assert main(["convert", "zoo:mlp", "--to", "triton", "--dynamic-batch", "--triton-name", "scorer",
                 "--triton-max-batch", "32", "-o", str(out)]) == 0
    return out


def test_runner_refuses_a_config_that_disagrees_with_the_model(scorer, tmp_path):
    import shutil

    from forgeml.targets import TARGETS
    from forgeml.targets.base import Artifact

    repo = tmp_path / "model_repository"
    shutil.copytree(scorer / "model_repository", repo)
    cfg_path = repo / "scorer" / "config.pbtxt"
    art = Artifact("triton", repo / "scorer" / "1" / "model.onnx", [])
    TARGETS["triton"].runner(art, None)  # as written: accepted
    cfg_path.write_text(cfg_path.read_text().replace("TYPE_FP32", "TYPE_FP16", 1))
    with pytest.raises(TargetError, match=r"declared TYPE_FP16, the model takes tensor\(float\)"):
        TARGETS["triton"].runner(art, None)
    cfg_path.write_text(cfg_path.read_text().replace("TYPE_FP16", "TYPE_FP32").replace('name: "x"', 'name: "y"'))
    with pytest.raises(TargetError, match="config inputs"):
        TARGETS["triton"].runner(art, None)


def test_render_parses_back_with_and_without_the_schema():
    cfg = pbtxt.ModelConfig("m", 4, (pbtxt.TensorConfig('a "q"', "TYPE_INT64", (-1, 7)),),
                            (pbtxt.TensorConfig("b", "TYPE_FP32", (3,)),))
    text = pbtxt.render(cfg)
    assert pbtxt.parse_subset(text) == cfg
    _schema()
    assert pbtxt.validate(text) == cfg


def test_inspect_reads_a_config(scorer, capsys):
    from forgeml.cli.app import main

    capsys.readouterr()
    assert main(["inspect", str(scorer / "model_repository" / "scorer" / "config.pbtxt")]) == 0
    out = capsys.readouterr().out
    assert "max_batch_size: 32" in out and "TYPE_FP32" in out and "validated: True" in out


def test_without_tritonclient_the_repository_is_written_and_the_manifest_says_unvalidated(tmp_path, monkeypatch):
    import sys

    for mod in ("tritonclient", "tritonclient.grpc", "tritonclient.grpc.model_config_pb2"):
        monkeypatch.setitem(sys.modules, mod, None)  # import now fails as if the extra were missing
    conv = forgeml.convert("zoo:mlp", targets=["triton"], out_dir=tmp_path / "o", passes=[])
    assert conv.ok
    stage = next(s for s in conv.manifest["stages"] if s["name"] == "triton")
    assert stage["metadata"]["config_validated"].startswith("skipped: tritonclient not installed")
    assert stage["parity"]["passed"]  # the runner read the config with its own subset parser


def test_cli_flags_name_and_batch_and_bad_values_say_the_flag(scorer, tmp_path, capsys):
    from forgeml.cli.app import main

    text = (scorer / "model_repository" / "scorer" / "config.pbtxt").read_text()
    assert 'name: "scorer"' in text and "max_batch_size: 32" in text and "dynamic_batching" in text
    capsys.readouterr()
    assert main(["convert", "zoo:mlp", "--to", "triton", "--triton-max-batch", "0", "-o", str(tmp_path / "p")]) == 2
    assert "--triton-max-batch must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
