"""External data outside the model's directory and special files are refused with one line by every
command that opens an .onnx file; a sound model with external data still loads and converts."""

from __future__ import annotations

import os

import numpy as np
import pytest

from forgeml.cli.app import main
from forgeml.errors import InputError
from forgeml.formats import onnx_file


def _model(path, location: str | None = None, data: bytes | None = None):
    """A MatMul by a 4x4 weight; with ``location`` the weight lives in that external file."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(4, 4), "w")
    if location is not None:
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", "0"), ("length", "64")):
            e = w.external_data.add()
            e.key, e.value = k, v
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path.write_bytes(m.SerializeToString())
    if data is not None:
        (path.parent / location).write_bytes(data)
    return path


def _cli(capsys, *args):
    rc = main(list(args))
    _, err = capsys.readouterr()
    lines = [x for x in err.strip().splitlines() if x.strip()]
    return rc, lines


def _hostile(tmp_path, kind: str):
    d = tmp_path / "a" / "b" / "model"
    d.mkdir(parents=True)
    secret = tmp_path / "a" / "secret.bin"
    secret.write_bytes(np.ones(16, np.float32).tobytes())
    (tmp_path / "secret.bin").write_bytes(secret.read_bytes())
    location = {"parent": "../secret.bin", "deep": "../../secret.bin", "absolute": str(secret),
                "passwd": "/etc/passwd", "symlink": "w.bin", "dotdot-inside": "sub/../../secret.bin"}[kind]
    if kind == "symlink":
        os.symlink(secret, d / "w.bin")
    return _model(d / "m.onnx", location), location


KINDS = ["parent", "deep", "absolute", "passwd", "symlink", "dotdot-inside"]


@pytest.mark.parametrize("kind", KINDS)
def test_loader_refuses_locations_outside_the_directory(tmp_path, kind):
    path, location = _hostile(tmp_path, kind)
    for external in (True, False):
        with pytest.raises(InputError) as e:
            onnx_file.load(path, external=external)
        msg = str(e.value)
        assert "\n" not in msg and str(path) in msg and "'w'" in msg and location in msg and "refused" in msg


@pytest.mark.parametrize("kind", ["parent", "passwd", "symlink"])
@pytest.mark.parametrize("command", ["inspect", "convert", "parity", "check-trt"])
def test_every_command_refuses_it_in_one_line(tmp_path, capsys, kind, command):
    path, location = _hostile(tmp_path, kind)
    args = {"inspect": ["inspect", str(path)], "convert": ["convert", str(path), "-o", str(tmp_path / "out")],
            "parity": ["parity", str(path), str(path)], "check-trt": ["check-trt", str(path)]}[command]
    rc, lines = _cli(capsys, *args)
    assert rc == 2 and len(lines) == 1, lines
    assert "outside the model's directory" in lines[0] and location in lines[0] and "'w'" in lines[0]
    assert not (tmp_path / "out").exists()


def test_sound_external_data_loads_and_bad_ranges_are_one_line(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    w = np.arange(16, dtype=np.float32).tobytes()
    proto = onnx_file.load(_model(d / "m.onnx", "w.bin", w))
    from onnx import numpy_helper

    np.testing.assert_array_equal(numpy_helper.to_array(proto.graph.initializer[0]).ravel(), np.arange(16))
    (d / "w.bin").write_bytes(w[:10])  # truncated external file
    with pytest.raises(InputError, match="do not fit the 10-byte file"):
        onnx_file.load(d / "m.onnx")
    (d / "w.bin").unlink()
    with pytest.raises(InputError, match="no such file"):
        onnx_file.load(d / "m.onnx")
    os.mkfifo(d / "w.bin")  # a FIFO as external data must not block
    with pytest.raises(InputError, match="a FIFO, not a file"):
        onnx_file.load(d / "m.onnx")


def _special(tmp_path, kind):
    if kind == "fifo":
        p = tmp_path / "model.onnx"
        os.mkfifo(p)
        return p, "a FIFO, not a file"
    if kind == "device":
        return "/dev/zero", "a device, not a file"
    if kind == "directory":
        p = tmp_path / "model.onnx"
        p.mkdir()
        return p, "a directory, not a file"
    p = tmp_path / "model.onnx"
    p.write_bytes(b"")
    return p, "an empty file"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "empty"])
@pytest.mark.parametrize("command", ["inspect", "convert", "parity"])
def test_special_files_are_one_line_never_a_hang(tmp_path, capsys, kind, command):
    p, words = _special(tmp_path, kind)
    good = _model(tmp_path / "good.onnx")
    args = {"inspect": ["inspect", str(p)], "convert": ["convert", str(p), "-o", str(tmp_path / "out")],
            "parity": ["parity", str(good), str(p)]}[command]
    if kind == "device" and command != "convert":
        args = [a if a != str(p) else "/dev/zero" for a in args]
    rc, lines = _cli(capsys, *args)
    assert rc == 2 and len(lines) == 1, lines
    if not (kind == "directory" and command == "convert"):  # a directory is a source kind of its own there
        assert words in lines[0], lines


def _bomb(path, kind: str):
    from onnx import TensorProto, helper, numpy_helper

    if kind == "big-input":
        nodes, inits, x_shape, y_shape = [helper.make_node("Relu", ["x"], ["y"])], [], [1, 2**40], [1, 2**40]
    else:
        s = numpy_helper.from_array(np.array([2**20, 2**20], np.int64), "s")
        nodes = [helper.make_node("ConstantOfShape", ["s"], ["c"], value=numpy_helper.from_array(np.ones(1, np.float32))),
                 helper.make_node("Add", ["x", "c"], ["y"])]
        inits, x_shape, y_shape = [s], [1, 1], ["a", "b"]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path.write_bytes(m.SerializeToString())
    return path


@pytest.mark.parametrize("kind,needle", [("big-input", "input 'x': shape (1, 1099511627776)"),
                                         ("constant-of-shape", "node 'c' (ConstantOfShape)")])
def test_allocation_bombs_are_one_line_before_allocating(tmp_path, capsys, kind, needle):
    import resource

    path = _bomb(tmp_path / "m.onnx", kind)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rc, lines = _cli(capsys, "convert", str(path), "-o", str(tmp_path / "out"))
    assert rc == 2 and len(lines) == 1 and needle in lines[0] and "GiB" in lines[0], lines
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 300  # MiB
