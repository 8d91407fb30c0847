"""The calling project's git commit: recorded from a real checkout, absent (never an error) elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from forgeml.pipeline.provenance import git_project

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(cwd, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@needs_git
def test_a_checkout_gives_its_commit_and_whether_it_is_dirty(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text("print(1)\n")
    _git(tmp_path, "add", "train.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    head = _git(tmp_path, "rev-parse", "HEAD").strip()
    rec = git_project(tmp_path)
    assert rec.commit == head and rec.dirty is False
    (tmp_path / "train.py").write_text("print(2)\n")
    assert git_project(tmp_path / ".").dirty is True
    (tmp_path / "untracked.txt").write_text("x")  # untracked files do not make a tree dirty
    _git(tmp_path, "checkout", "-q", "train.py")
    assert git_project(tmp_path).dirty is False


@needs_git
def test_outside_a_checkout_or_before_the_first_commit_there_is_none(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    env_ceiling = os.environ.get("GIT_CEILING_DIRECTORIES")
    os.environ["GIT_CEILING_DIRECTORIES"] = str(tmp_path)  # do not find a checkout above tmp
    try:
        assert git_project(plain) is None
        empty = tmp_path / "empty"
        empty.mkdir()
        _git(empty, "init", "-q")
        assert git_project(empty) is None  # no commit yet
    finally:
        if env_ceiling is None:
            os.environ.pop("GIT_CEILING_DIRECTORIES")
        else:
            os.environ["GIT_CEILING_DIRECTORIES"] = env_ceiling


def test_without_git_there_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable on PATH
    assert git_project(tmp_path) is None


def test_outside_a_checkout_nothing_is_spawned(tmp_path, monkeypatch):
    """No .git at or above the directory: git is not even started (a conversion spawns nothing)."""
    import subprocess

    def refuse(*a, **k):
        raise AssertionError("git was started")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    assert git_project(tmp_path) is None
