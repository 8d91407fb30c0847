"""Adversarial tests of the pickle scanner and of every CLI path that could unpickle a hostile file.

The corpus (tests/validation/hostile_corpus.py) is hand-assembled opcode by opcode: one payload spelled
every way the pickle machine allows, attribute chains and code-reaching helpers under allow-listed
names, and payloads hidden in torch zip/legacy files, joblib files (plain and compressed), .npy/.npz,
.pt2 archives and files misnamed .safetensors. Each payload, if it ever ran, would create its own
marker file.

Per hostile file: the scanner must name a dangerous global (or, where no global can be read, at least
not call the file clean) and ``refuse_unsafe`` must refuse it even with ``trust_pickle``; the CLI must
answer ``scan`` with 1 and ``convert`` (with and without ``--trust-pickle``) with 2, without creating the
output directory, while traps on every code-running and unpickling entry point stay silent and the
marker never appears. A subprocess check proves the corpus is real: each case that names a loader
really runs its payload under that loader. Clean files must scan clean. An AST guard keeps every
pickle-capable loader call inside forgeml/security/loaders.py.
"""

from __future__ import annotations

import ast
import builtins
import functools
import json
import os
import pickle
import subprocess
import sys
import textwrap
import types
from pathlib import Path

# Heavy imports first, so that the traps installed later never see import-time exec/eval/pickle use.
import joblib
import joblib.numpy_pickle
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
import sklearn.linear_model  # noqa: F401

from forgeml.cli import main
from forgeml.errors import InputError
from forgeml.security.pickle_scan import refuse_unsafe, scan_file
from tests.validation import hostile_corpus as hc

REPO = Path(__file__).resolve().parents[2]
HOSTILE = hc.HOSTILE_NAMES
CLEAN = list(hc.CLEAN)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return hc.build_corpus(tmp_path_factory.mktemp("hostile"))


def _describe(report) -> str:
    return (f"format={getattr(report, 'format', '?')!r} clean={report.clean} globals="
            f"{[(g.module, g.name, g.verdict) for g in report.globals][:8]} problems={report.problems[:2]}")


# --- the scanner's verdict --------------------------------------------------------------------------

@pytest.mark.parametrize("name", HOSTILE)
def test_scanner_flags_hostile_file(corpus, name):
    built = corpus[name]
    spec = built.spec
    report = scan_file(built.path)
    if spec.expect == "dangerous":
        assert report.dangerous, f"{name} ({spec.why}): no dangerous global reported; {_describe(report)}"
        found = {(g.module, g.name) for g in report.dangerous}
        missing = set(spec.must_flag) - found
        assert not missing, f"{name}: {sorted(missing)} not among the dangerous globals {sorted(found)}"
    else:
        assert not report.clean, f"{name} ({spec.why}): reported clean; {_describe(report)}"
    with pytest.raises(InputError):
        refuse_unsafe(built.path, trust_pickle=True)
    with pytest.raises(InputError):
        refuse_unsafe(built.path, trust_pickle=False)
    assert not built.marker.exists()


@pytest.mark.parametrize("name", CLEAN)
def test_clean_files_scan_clean(corpus, name):
    built = corpus[name]
    report = scan_file(built.path)
    assert report.clean and not report.dangerous and not report.problems, _describe(report)
    assert report.globals, "a clean model file that names no global at all: was it scanned?"
    assert main(["scan", str(built.path)]) == 0


# --- the CLI under traps ----------------------------------------------------------------------------

class TrapHit(Exception):
    """Raised by a trap so that nothing trapped ever runs."""


def _mentions_marker(obj, depth: int = 0) -> bool:
    token = hc.MARK_TOKEN
    if depth > 6:
        return False
    if isinstance(obj, str):
        return token in obj
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return token.encode() in bytes(obj)
    if isinstance(obj, os.PathLike):
        return _mentions_marker(os.fspath(obj), depth + 1)
    if isinstance(obj, types.CodeType):
        return any(_mentions_marker(c, depth + 1) for c in obj.co_consts)
    if isinstance(obj, dict):
        return any(_mentions_marker(k, depth + 1) or _mentions_marker(v, depth + 1) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return any(_mentions_marker(x, depth + 1) for x in obj)
    if isinstance(obj, functools.partial):
        return _mentions_marker((obj.args, obj.keywords), depth + 1)
    return False


class Traps:
    def __init__(self, monkeypatch):
        self.hits: list[str] = []
        self.mp = monkeypatch

    def record(self, what: str, args=(), kwargs=None):
        self.hits.append(f"{what}{tuple(args)!r}{kwargs or ''}"[:300])
        raise TrapHit(what)

    def on_marker(self, owner, attr: str, label: str | None = None):
        """Trap ``owner.attr`` when any argument mentions a marker; other calls pass through."""
        orig = getattr(owner, attr, None)
        if orig is None:
            return
        label = label or f"{getattr(owner, '__name__', owner)}.{attr}"

        @functools.wraps(orig)
        def trap(*a, **k):
            if _mentions_marker(a) or _mentions_marker(k):
                self.record(label, a, k)
            return orig(*a, **k)

        self.mp.setattr(owner, attr, trap)

    def on_exec(self, attr: str):
        """builtins.exec/eval, trapped when the source or an argument mentions a marker. Without explicit
        namespaces they run in the caller's, as the real builtins would."""
        orig = getattr(builtins, attr)

        def trap(source, globals=None, locals=None, *rest, **kw):
            if _mentions_marker((source, globals, locals, rest, kw)):
                self.record(f"builtins.{attr}", (source,))
            if globals is None:
                frame = sys._getframe(1)
                globals, locals = frame.f_globals, frame.f_locals if locals is None else locals
            return orig(source, globals, locals, *rest, **kw)

        self.mp.setattr(builtins, attr, trap)

    def always(self, owner, attr: str, label: str | None = None, unless=None):
        """Trap every call of ``owner.attr`` (``unless(args, kwargs)`` lets a harmless call through)."""
        orig = getattr(owner, attr, None)
        if orig is None:
            return
        label = label or f"{getattr(owner, '__name__', owner)}.{attr}"

        def trap(*a, **k):
            if unless is not None and unless(a, k):
                return orig(*a, **k)
            self.record(label, a, k)

        self.mp.setattr(owner, attr, trap)

    def install(self):
        import _pickle
        import posix

        unpicklers = (pickle.Unpickler, pickle._Unpickler)  # the originals, before any trap replaces them

        for owner in (os, posix):
            for attr in ("system", "popen", "execv", "execve", "execvp", "execvpe", "execl", "execlp", "spawnv",
                         "spawnve", "spawnvp", "posix_spawn", "posix_spawnp"):
                self.on_marker(owner, attr)
        self.on_marker(subprocess.Popen, "__init__", "subprocess.Popen")
        for attr in ("exec", "eval"):
            self.on_exec(attr)
        for attr in ("compile", "open"):
            self.on_marker(builtins, attr, f"builtins.{attr}")
        # unpickling: no hostile file may ever reach a loader, so these fire on any call
        for attr in ("load", "loads", "_load", "_loads"):
            self.always(pickle, attr, f"pickle.{attr}")
        for attr in ("load", "loads"):
            self.always(_pickle, attr, f"_pickle.{attr}")
        traps = self

        class TrapUnpickler(pickle.Unpickler):
            def __init__(self, *a, **k):
                traps.record("pickle.Unpickler", a, k)

        self.mp.setattr(pickle, "Unpickler", TrapUnpickler)
        self.mp.setattr(_pickle, "Unpickler", TrapUnpickler)
        self.always(pickle._Unpickler, "load", "pickle._Unpickler.load")
        self.always(pickle._Unpickler, "find_class", "pickle._Unpickler.find_class")
        # forgeml's own unpicklers (whatever the loaders module defines) must not start on a refused file
        from forgeml.security import loaders

        for obj in vars(loaders).values():
            if isinstance(obj, type) and issubclass(obj, unpicklers) and obj not in unpicklers:
                self.always(obj, "load", f"loaders.{obj.__name__}.load")
        self.always(torch, "load", "torch.load")
        self.always(torch.serialization, "load", "torch.serialization.load")
        self.always(joblib, "load", "joblib.load")
        self.always(joblib.numpy_pickle, "load", "joblib.numpy_pickle.load")
        self.always(np, "load", "numpy.load", unless=lambda a, k: not k.get("allow_pickle", a[2] if len(a) > 2 else False))
        try:
            import cloudpickle
        except ImportError:
            cloudpickle = None
        if cloudpickle is not None:
            for attr in ("load", "loads"):
                self.always(cloudpickle, attr, f"cloudpickle.{attr}")
        return self


@pytest.fixture(scope="module")
def warm_cli(corpus, tmp_path_factory):
    """Run the CLI paths once on clean files before any trap exists, so that the modules they import
    (pipeline, converters, torch.export, ...) are imported untrapped."""
    out = tmp_path_factory.mktemp("warm")
    main(["scan", str(corpus["clean_sklearn_pickle"].path)])
    main(["convert", str(corpus["clean_sklearn_pickle"].path), "-o", str(out / "a")])  # 2: needs --trust-pickle
    main(["convert", str(corpus["clean_torch_state_dict_zip"].path), "-o", str(out / "b")])  # 2: weights only
    import torch._export.serde.serialize
    import torch.export.pt2_archive._package  # noqa: F401


@pytest.fixture
def traps(warm_cli, monkeypatch):
    t = Traps(monkeypatch).install()
    yield t


def _cli_runs(path: Path, out: Path) -> list[tuple[list[str], int, Path | None]]:
    """(argv, wanted exit code, output dir that must not appear)."""
    runs = [(["scan", str(path)], 1, None),
            (["convert", str(path), "-o", str(out / "plain")], 2, out / "plain"),
            (["convert", str(path), "-o", str(out / "trusted"), "--trust-pickle"], 2, out / "trusted")]
    if path.suffix == ".safetensors":
        runs.append((["inspect", str(path)], 2, None))
    if path.suffix == ".npz":  # the --inputs and --calib readers take .npz files
        runs.append((["convert", str(path), "--inputs", str(path), "-o", str(out / "inputs")], 2, out / "inputs"))
        runs.append((["convert", str(path), "--calib", str(path), "--quantize", "int8-static", "-o",
                      str(out / "calib")], 2, out / "calib"))
    return runs


@pytest.mark.parametrize("name", HOSTILE)
def test_cli_refuses_hostile_file_without_running_it(corpus, name, traps, tmp_path):
    built = corpus[name]
    failures = []
    for argv, want, out_dir in _cli_runs(built.path, tmp_path):
        try:
            rc = main(argv)
        except TrapHit as e:  # a trap deep inside a path that let the exception through
            rc = f"TrapHit({e})"
        if rc != want:
            failures.append(f"`forgeml {' '.join(argv[:1] + argv[2:])}` exited {rc}, want {want}")
        if out_dir is not None and out_dir.exists():
            failures.append(f"`forgeml {argv[0]}` created its output directory {out_dir.name}")
        if traps.hits:
            failures.append(f"`forgeml {' '.join(argv[:1] + argv[2:])}` hit traps: {traps.hits}")
            traps.hits.clear()
    if built.marker.exists():
        failures.append("the payload RAN: its marker file exists")
    assert not failures, f"{name} ({built.spec.why}):\n  " + "\n  ".join(failures)


# --- the corpus is real --------------------------------------------------------------------------------

_RUNNER = textwrap.dedent("""
    import json, pickle, sys, warnings
    warnings.simplefilter("ignore")
    for runner, path in json.load(open(sys.argv[1])):
        try:
            if runner == "pickle":
                with open(path, "rb") as f:
                    pickle.load(f)
            elif runner == "pickle_all":
                with open(path, "rb") as f:
                    while True:
                        try:
                            pickle.load(f)
                        except EOFError:
                            break
            elif runner == "torch":
                import torch
                torch.load(path, weights_only=False)
            elif runner == "torch_export":
                import torch
                torch.export.load(path)
            elif runner == "joblib":
                import joblib
                joblib.load(path)
            elif runner == "numpy":
                import numpy as np
                loaded = np.load(path, allow_pickle=True)
                for key in getattr(loaded, "files", []):
                    loaded[key]
        except BaseException as e:  # the payload has run by then; what follows it may well fail
            print(f"{path}: {type(e).__name__}: {str(e)[:120]}", file=sys.stderr)
""")


def test_corpus_payloads_really_execute(tmp_path):
    """Every case that names a loader, built afresh (its own markers) and loaded in a subprocess: its
    marker must appear. This is what makes the other tests able to fail."""
    names = [s.name for s in hc.SPECS if s.runner]
    built = hc.build_corpus(tmp_path / "corpus", names)
    items = [[built[n].spec.runner, str(built[n].path)] for n in names]
    (tmp_path / "items.json").write_text(json.dumps(items))
    (tmp_path / "run.py").write_text(_RUNNER)
    proc = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(tmp_path / "items.json")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    silent = [n for n in names if not built[n].marker.exists()]
    assert not silent, f"payloads that did not run under their loader: {silent}\n{proc.stderr[-3000:]}"
    assert len(names) >= 40


def test_corpus_covers_every_family():
    families = {s.family for s in hc.SPECS}
    assert families == {"1-issue", "2-multi", "3-spelling", "4-chain", "5-container", "6-legacy"}
    for fam in families:
        assert any(s.runner for s in hc.SPECS if s.family == fam), f"no executed payload in family {fam}"


# --- the AST guard: pickle-capable loaders only in the audited module ---------------------------------

AUDITED = "forgeml/security/loaders.py"  # the one module allowed to unpickle, after the scan

# Qualified names that deserialize pickles whatever their arguments.
_ALWAYS = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "pickle._load", "pickle._loads", "pickle._Unpickler",
    "joblib.load", "joblib.numpy_pickle.load", "joblib.numpy_pickle.NumpyUnpickler",
    "joblib.numpy_pickle_compat.load_compatibility", "dill.load", "dill.loads", "dill.Unpickler",
    "cloudpickle.load", "cloudpickle.loads", "pandas.read_pickle", "pandas.io.pickle.read_pickle",
    # torch.export.load unpickles the archive's sample inputs and constants, falling back to
    # torch.load(weights_only=False) and calling pickle.loads on opaque objects (torch 2.13)
    "torch.export.load", "torch.export.pt2_archive._package.load_pt2",
}
# name -> (keyword, the literal it must be given)
_CONDITIONAL = {
    "torch.load": ("weights_only", True), "torch.serialization.load": ("weights_only", True),
    "numpy.load": ("allow_pickle", False), "numpy.lib.npyio.load": ("allow_pickle", False),
    "numpy.lib._npyio_impl.load": ("allow_pickle", False),
}
# Names a module is usually bound to when it was not imported under that name (``torch = _torch()``).
_CONVENTIONAL = {"np": "numpy", "numpy": "numpy", "pd": "pandas", "pandas": "pandas", "tf": "tensorflow",
                 "torch": "torch", "pickle": "pickle", "_pickle": "_pickle", "joblib": "joblib", "dill": "dill",
                 "cloudpickle": "cloudpickle", "keras": "keras"}
_IMPORTERS = {"require", "importlib.import_module", "import_module", "__import__"}


def _literal(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


class _Guard:
    def __init__(self, tree: ast.AST):
        self.aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.aliases[a.asname] = a.name
                    else:
                        root = a.name.split(".")[0]
                        self.aliases[root] = root
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    if a.name != "*":
                        self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(tree):  # x = require("torch", ...), importlib.import_module("pickle") ...
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                mod = self._imported(node.value)
                if mod:
                    self.aliases[node.targets[0].id] = mod

    def _imported(self, node) -> str | None:
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            fname = func.id if isinstance(func, ast.Name) else \
                f"{getattr(func.value, 'id', '')}.{func.attr}" if isinstance(func, ast.Attribute) else ""
            if fname in _IMPORTERS or fname.endswith(".import_module"):
                return node.args[0].value
        return None

    def qualname(self, node) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, _CONVENTIONAL.get(node.id))
        if isinstance(node, ast.Attribute):
            base = self.qualname(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Call):
            mod = self._imported(node)
            if mod:
                return mod
            if isinstance(node.func, ast.Name) and node.func.id == "getattr" and len(node.args) >= 2 \
                    and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
                base = self.qualname(node.args[0])
                return f"{base}.{node.args[1].value}" if base else None
        return None


def _banned(q: str) -> bool:
    last = q.rsplit(".", 1)[-1]
    return q in _ALWAYS or (q.startswith("_pickle.") and ("load" in last.lower() or "Unpickler" in last))


def _keras_loader(q: str) -> bool:
    return q.split(".")[0] in ("keras", "tensorflow", "tf_keras") and q.endswith("load_model")


def find_violations(source: str, filename: str = "<src>") -> list[str]:
    """Every pickle-capable load in ``source``: ``file:line: what``."""
    tree = ast.parse(source, filename)
    g = _Guard(tree)
    out = []
    called = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        called.add(id(node.func))
        q = g.qualname(node.func)
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        where = f"{filename}:{node.lineno}"
        if "custom_objects" in kw:
            out.append(f"{where}: custom_objects= (deserializes arbitrary Python objects)")
        if _literal(kw.get("trust_remote_code"), True):
            out.append(f"{where}: trust_remote_code=True")
        if q is None:
            continue
        if _banned(q):
            out.append(f"{where}: {q}(...) unpickles")
        elif q in _CONDITIONAL:
            key, want = _CONDITIONAL[q]
            if not _literal(kw.get(key), want):
                out.append(f"{where}: {q}(...) without the literal {key}={want}")
        elif _keras_loader(q) and "safe_mode" in kw and not _literal(kw["safe_mode"], True):
            out.append(f"{where}: {q}(..., safe_mode=<not True>)")
        elif q.endswith("enable_unsafe_deserialization"):
            out.append(f"{where}: {q}()")
    for node in ast.walk(tree):  # a loader passed around or subclassed, not called here
        if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Load) and id(node) not in called:
            q = g.qualname(node)
            if q and (_banned(q) or q in _CONDITIONAL):
                out.append(f"{filename}:{node.lineno}: {q} referenced (passed around or subclassed)")
    return out


def test_no_unaudited_pickle_loads_in_forgeml():
    violations = []
    files = sorted((REPO / "forgeml").rglob("*.py"))
    assert len(files) > 20
    for path in files:
        rel = path.relative_to(REPO).as_posix()
        if rel == AUDITED:
            continue
        violations += find_violations(path.read_text(), rel)
    assert not violations, "pickle-capable loads outside " + AUDITED + ":\n  " + "\n  ".join(violations)


@pytest.mark.parametrize("source, count", [
    ("import pickle\npickle.loads(b)\n", 1),
    ("import pickle as p\np.load(f)\n", 1),
    ("from pickle import loads\nloads(b)\n", 1),
    ("from pickle import loads as l\nl(b)\n", 1),
    ("import _pickle\n_pickle.loads(b)\n", 1),
    ("import pickle\nclass U(pickle.Unpickler):\n    pass\n", 1),
    ("import pickle\nf = pickle.loads\n", 1),
    ("import pickle\ngetattr(pickle, 'loads')(b)\n", 1),
    ("import importlib\nimportlib.import_module('pickle').loads(b)\n", 1),
    ("import joblib\njoblib.load(p)\n", 1),
    ("from joblib import load\nload(p)\n", 1),
    ("import dill\ndill.loads(b)\n", 1),
    ("import cloudpickle as cp\ncp.load(f)\n", 1),
    ("import pandas as pd\npd.read_pickle(p)\n", 1),
    ("def f():\n    torch = _torch()\n    return torch.load(p)\n", 1),
    ("import torch\ntorch.load(p, weights_only=False)\n", 1),
    ("import torch\ntorch.load(p, **kw)\n", 1),
    ("import torch\ntorch.load(p, map_location='cpu', weights_only=True)\n", 0),
    ("from torch import load\nload(p, weights_only=True)\nload(p)\n", 1),
    ("torch = require('torch', 'torch')\ntorch.export.load(p)\n", 1),
    ("import numpy as np\nnp.load(p)\n", 1),
    ("import numpy as np\nnp.load(p, allow_pickle=True)\n", 1),
    ("import numpy as np\nnp.load(p, allow_pickle=False)\n", 0),
    ("import keras\nkeras.saving.load_model(p, safe_mode=False)\n", 1),
    ("import keras\nkeras.saving.load_model(p, compile=False)\n", 0),
    ("import tensorflow as tf\ntf.keras.models.load_model(p, custom_objects={'A': A})\n", 1),
    ("import pickle\npickle.dumps(x)\nraise pickle.UnpicklingError('x')\n", 0),
])
def test_guard_finds_violations(source, count):
    found = find_violations(source)
    assert len(found) == count, found
