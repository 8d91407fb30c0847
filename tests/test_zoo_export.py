"""`forgeml zoo export`: exact output paths, no silent merge or overwrite, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from forgeml.cli.app import main
from models_zoo.export import export, output_paths


def test_output_paths_append_the_suffix_and_keep_a_given_one(tmp_path):
    assert output_paths("mlp", tmp_path / "model.v2") == (tmp_path / "model.v2.pt2", tmp_path / "model.v2.inputs.npz")
    assert output_paths("mlp", tmp_path / "mlp.pt2") == (tmp_path / "mlp.pt2", tmp_path / "mlp.inputs.npz")
    # a Hugging Face checkpoint is a directory named exactly like the stem
    assert output_paths("tiny-gpt2", tmp_path / "gpt") == (tmp_path / "gpt", tmp_path / "gpt.inputs.npz")


def test_dotted_stem_is_checked_and_force_replaces_atomically(tmp_path, capsys):
    stem = tmp_path / "model.v2"
    assert main(["zoo", "export", "mlp", "-o", str(stem)]) == 0
    pt2 = tmp_path / "model.v2.pt2"
    assert pt2.is_file() and (tmp_path / "model.v2.inputs.npz").is_file()
    before = pt2.read_bytes()
    capsys.readouterr()
    assert main(["zoo", "export", "mlp", "-o", str(stem)]) == 2  # model.v2.pt2 exists: refused
    err = capsys.readouterr().err.strip()
    assert "model.v2.pt2" in err and "--force" in err and len(err.splitlines()) == 1
    assert main(["zoo", "export", "mlp", "-o", str(stem), "--force"]) == 0
    assert pt2.read_bytes()[:4] == before[:4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.v2.inputs.npz", "model.v2.pt2"]  # no temp left


def test_export_refuses_without_force_and_leaves_the_old_file_on_failure(tmp_path, monkeypatch):
    from models_zoo import export as export_mod

    path, npz = export("mlp", tmp_path / "m")
    with pytest.raises(FileExistsError):
        export("mlp", tmp_path / "m")
    old = path.read_bytes()

    def broken(build, p):
        p.write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setitem(export_mod.SAVERS, "torch", export_mod.Saver(".pt2", broken))
    with pytest.raises(RuntimeError):
        export("mlp", tmp_path / "m", force=True)
    assert path.read_bytes() == old and npz.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.inputs.npz", "m.pt2"]
    assert set(np.load(npz).files)


def test_hf_checkpoint_dir_is_checked_and_replaced_not_merged(tmp_path, capsys):
    pytest.importorskip("transformers")
    stem = tmp_path / "gpt"
    stem.mkdir()
    (stem / "stale.bin").write_bytes(b"old")
    assert main(["zoo", "export", "tiny-gpt2", "-o", str(stem)]) == 2  # existing non-empty dir: refused
    assert "already exists" in capsys.readouterr().err
    assert main(["zoo", "export", "tiny-gpt2", "-o", str(stem), "--force"]) == 0
    assert (stem / "config.json").is_file() and not (stem / "stale.bin").exists()
