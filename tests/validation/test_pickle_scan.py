"""The pickle scanner on real pickles built here: malicious ones are flagged and refused and their
payload never runs (it would create a marker file); clean sklearn/torch files pass."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from forgeml.cli.app import main
from forgeml.errors import InputError
from forgeml.security.pickle_scan import DANGEROUS, SAFE, UNKNOWN, refuse_unsafe, scan_bytes, scan_file


class Payload:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Custom:
    """A user's own class: not on the allow-list, not known to run code."""

    def __init__(self):
        self.x = 1


def _fitted_iris():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=300).fit(X, y)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PAYLOAD_RAN"
    yield path
    assert not path.exists(), "the pickle payload was executed"


def _flagged(report):
    return {(g.module, g.name, g.verdict) for g in report.flagged}


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_plain_pickle_payload_is_dangerous_at_every_protocol(tmp_path, marker, protocol):
    f = tmp_path / "evil.pkl"
    f.write_bytes(pickle.dumps({"weights": np.ones(3), "x": Payload(marker)}, protocol=protocol))
    report = scan_file(f)
    system = [g for g in report.globals if g.name == "system"]
    assert system and system[0].verdict == DANGEROUS and system[0].module in ("os", "posix", "nt")
    assert system[0].offset > 0 and not report.clean
    assert main(["scan", str(f)]) == 1
    assert main(["convert", str(f), "-o", str(tmp_path / "out")]) == 2
    assert main(["convert", str(f), "-o", str(tmp_path / "out2"), "--trust-pickle"]) == 2  # refused anyway
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_stack_global_through_the_memo_and_inst():
    # PROTO 4; "os" memoized, popped, fetched back with BINGET; "system"; STACK_GLOBAL; call; STOP
    memo_trick = (b"\x80\x04\x8c\x02os\x94" b"0" b"h\x00" b"\x8c\x06system\x94" b"\x93"
                  b"\x8c\x04true\x85R.")
    report = scan_bytes(memo_trick, "x.pkl")
    assert _flagged(report) == {("os", "system", DANGEROUS)}
    assert report.globals[0].opcode == "STACK_GLOBAL"
    inst = b"(S'ls'\nios\nsystem\n."  # protocol 0 INST
    report = scan_bytes(inst, "y.pkl")
    assert _flagged(report) == {("os", "system", DANGEROUS)}
    assert report.globals[0].opcode == "INST"


def test_builtins_eval_and_unknown_class(tmp_path):
    evil = b"\x80\x02c__builtin__\neval\nq\x00X\x04\x00\x00\x001+1q\x01\x85q\x02Rq\x03."
    assert _flagged(scan_bytes(evil, "e.pkl")) == {("__builtin__", "eval", DANGEROUS)}
    f = tmp_path / "custom.pkl"
    f.write_bytes(pickle.dumps(Custom()))
    report = scan_file(f)
    assert [g.verdict for g in report.globals] == [UNKNOWN]
    with pytest.raises(InputError, match="`options.trust_pickle`"):
        refuse_unsafe(f, trust_pickle=False)
    assert refuse_unsafe(f, trust_pickle=True).flagged  # the user vouched for their own class


def test_joblib_payload_after_raw_array_bytes(tmp_path, marker):
    import joblib

    for compress in (0, 3):
        f = tmp_path / f"evil{compress}.joblib"
        joblib.dump([np.arange(5000, dtype=np.float64), np.array(["a", None], dtype=object), Payload(marker)],
                    f, compress=compress)
        report = scan_file(f)
        assert not report.problems, report.problems
        assert ("posix" if os.name == "posix" else "nt", "system", DANGEROUS) in _flagged(report)
        assert main(["scan", str(f)]) == 1
        assert main(["convert", str(f), "-o", str(tmp_path / "out"), "--trust-pickle"]) == 2


def test_clean_sklearn_pickle_and_joblib_need_trust_then_convert(tmp_path):
    import joblib

    clf = _fitted_iris()
    pkl, jl = tmp_path / "clf.pkl", tmp_path / "clf.joblib"
    pkl.write_bytes(pickle.dumps(clf))
    joblib.dump(clf, jl)
    for f in (pkl, jl):
        report = scan_file(f)
        assert report.clean and report.globals and all(g.verdict == SAFE for g in report.globals)
        assert main(["scan", str(f)]) == 0
        assert main(["convert", str(f), "-o", str(tmp_path / "no")]) == 2  # scan passes, trust still needed
    import forgeml

    result = forgeml.convert(str(jl),
                             targets=["onnx"],
                             passes=[],
                             out_dir=tmp_path / "out",
                             parity=forgeml.ParityOptions(inputs=[{"X": np.random.default_rng(1).normal(5, 2, (16, 4)).astype(np.float32)}]),
                             options=forgeml.ImportOptions(trust_pickle=True))
    assert result.ok
    rows = {r["output"]: r for r in result.manifest["stages"][0]["parity"]["rows"]}
    assert rows["label"]["exact_match"] == 1.0 and rows["probabilities"]["max_abs"] < 1e-4


def test_torch_checkpoints(tmp_path, marker):
    torch = pytest.importorskip("torch")
    clean = tmp_path / "sd.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), clean)
    report = scan_file(clean)
    assert report.format == "torch-zip" and report.clean
    assert any(g.name == "_rebuild_tensor_v2" for g in report.globals)
    assert main(["scan", str(clean)]) == 0
    evil = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "hook": Payload(marker)}, evil)
    report = scan_file(evil)
    assert any(g.verdict == DANGEROUS and g.member.endswith("data.pkl") for g in report.globals)
    assert main(["scan", str(evil)]) == 1
    assert main(["convert", str(evil), "-o", str(tmp_path / "out"), "--trust-pickle"]) == 2


def test_npy_object_array(tmp_path, marker):
    f = tmp_path / "obj.npy"
    np.save(f, np.array([Payload(marker), 1], dtype=object), allow_pickle=True)
    assert ("posix" if os.name == "posix" else "nt", "system", DANGEROUS) in _flagged(scan_file(f))
    plain = tmp_path / "plain.npy"
    np.save(plain, np.arange(4.0))
    report = scan_file(plain)
    assert report.clean and not report.globals and report.pickles == 0


def test_bad_input(tmp_path):
    assert main(["scan", str(tmp_path / "missing.pkl")]) == 2
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"\x80\x04this is not a pickle")
    assert not scan_file(junk).clean
    assert main(["scan", str(junk)]) == 1


def test_public_api(tmp_path, marker):
    import forgeml

    f = tmp_path / "evil.pkl"
    f.write_bytes(pickle.dumps(Payload(marker)))
    report = forgeml.scan(f)
    assert not report.clean and report.to_json()["globals"][0]["verdict"] == DANGEROUS


# --- bounds: hostile sizes cost neither memory nor time -----------------------------------------

def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("codec", ["gzip", "bz2", "lzma", "zlib"])
def test_decompression_bomb_is_refused_at_the_stated_limit(tmp_path, codec):
    import bz2
    import gzip
    import lzma
    import zlib

    from forgeml.security.pickle_scan import ScanLimits

    compress = {"gzip": gzip.compress, "bz2": bz2.compress, "lzma": lzma.compress, "zlib": zlib.compress}[codec]
    # a pickle whose one bytes literal is 64 MiB of zeros: it compresses to a few KB
    body = b"\x80\x04B" + (64 << 20).to_bytes(4, "little") + bytes(64 << 20) + b"."
    f = tmp_path / "bomb.joblib"
    f.write_bytes(compress(body))
    del body
    limits = ScanLimits(inflated_floor=8 << 20)
    before = _rss_mb()
    report = scan_file(f, limits)
    assert "inflates past the scan's limit" in " ".join(report.problems), report.problems
    assert _rss_mb() - before < 200  # streamed: the 64 MiB literal was never held
    # the default floor (256 MiB) lets it through, streamed and clean
    assert scan_file(f).clean


def test_zip_member_bomb_is_refused_before_inflating(tmp_path):
    import zipfile

    f = tmp_path / "bomb.pt"
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("archive/huge.pkl", bytes(300 << 20))
    report = scan_file(f)
    assert any("inflates to" in p and "huge.pkl" in p for p in report.problems), report.problems
    assert main(["scan", str(f)]) == 1
    assert main(["convert", str(f), "-o", str(tmp_path / "out"), "--trust-pickle"]) == 2


@pytest.mark.parametrize("body", [
    b"\x80\x04\x8e" + (1 << 62).to_bytes(8, "little") + b"x",  # BINBYTES8 declaring 4 EiB
    b"\x80\x04\x8d" + (1 << 40).to_bytes(8, "little") + b"x",  # BINUNICODE8 declaring 1 TiB
    b"\x80\x02B" + (0xFFFFFFFF).to_bytes(4, "little"),  # BINBYTES declaring 4 GiB
    b"\x80\x02\x8b" + (0x7FFFFFFF).to_bytes(4, "little"),  # LONG4 declaring 2 GiB
    b"(" * 100_000,  # MARKs and no STOP
    b"\x80\x02" + b"N0" * 50_000,  # pushes and pops, never a STOP
])
def test_lengths_that_lie_are_problems_not_allocations(tmp_path, body):
    f = tmp_path / "liar.pkl"
    f.write_bytes(body)
    before = _rss_mb()
    report = scan_file(f)
    assert report.problems and not report.clean
    assert _rss_mb() - before < 50
    assert main(["scan", str(f)]) == 1


def test_special_files_get_one_line(tmp_path, capsys):
    fifo = tmp_path / "pipe.pkl"
    os.mkfifo(fifo)
    assert main(["scan", str(fifo)]) == 2  # and no hang: it is never opened
    assert main(["scan", str(tmp_path)]) == 2
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    assert main(["scan", str(empty)]) == 1
    err = capsys.readouterr().err
    assert "a FIFO, not a file" in err and "a directory, not a file" in err and "Traceback" not in err


# --- every pickle in a stream, and legacy torch files ------------------------------------------

def test_payload_after_a_benign_pickle_and_after_torch_legacy_storages(tmp_path, marker):
    torch = pytest.importorskip("torch")
    evil = pickle.dumps(Payload(marker), protocol=2)
    f = tmp_path / "two.pkl"
    f.write_bytes(pickle.dumps({"a": 1}) + pickle.dumps([1, 2]) + evil)
    report = scan_file(f)
    assert report.pickles == 3 and report.dangerous

    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(3), "h": torch.ones(2, dtype=torch.float16), "i": torch.arange(4)}, legacy,
               _use_new_zipfile_serialization=False)
    report = scan_file(legacy)
    assert report.format == "torch-legacy" and report.pickles == 5 and report.clean, report.problems
    assert main(["scan", str(legacy)]) == 0
    appended = tmp_path / "appended.pt"
    appended.write_bytes(legacy.read_bytes() + evil)
    report = scan_file(appended)
    assert report.dangerous and any("after the torch storages" in p for p in report.problems)
    assert main(["convert", str(appended), "-o", str(tmp_path / "out"), "--trust-pickle"]) == 2


# --- the guarded unpickler behind --trust-pickle -----------------------------------------------

def test_trusted_load_resolves_names_and_refuses_what_they_really_are(tmp_path, marker, monkeypatch):
    """A user module that re-exports os.system under an innocent name passes the name-based scan as
    'unknown'; the guard looks at the object the name resolves to and refuses it."""
    import sys
    import types

    from forgeml.security.loaders import joblib_load

    shim = types.ModuleType("innocent_helpers")
    shim.tidy = os.system
    monkeypatch.setitem(sys.modules, "innocent_helpers", shim)
    f = tmp_path / "reexport.pkl"
    f.write_bytes(b"\x80\x02cinnocent_helpers\ntidy\nX" + len(f"touch {marker}").to_bytes(4, "little")
                  + f"touch {marker}".encode() + b"\x85R.")
    assert [g.verdict for g in scan_file(f).globals] == [UNKNOWN]
    with pytest.raises(InputError, match="posix.system|os.system|which can run code"):
        joblib_load(f, trust_pickle=True)
    clean = tmp_path / "clf.pkl"
    clean.write_bytes(pickle.dumps(_fitted_iris()))
    assert joblib_load(clean, trust_pickle=True).predict(np.ones((1, 4))).shape == (1,)


# --- what the stricter rules must still let through ----------------------------------------------

def test_legit_files_are_not_called_dangerous(tmp_path):
    """Private sklearn classes, numpy ufuncs in a FunctionTransformer, TorchScript archives and a whole
    module holding F.gelu are real files users bring: clean, or unknown (their own code) at worst."""
    import joblib
    import torch
    from sklearn.datasets import load_iris
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    X, y = load_iris(return_X_y=True)
    model = make_pipeline(FunctionTransformer(np.log1p), StandardScaler(), HistGradientBoostingClassifier(max_iter=3))
    joblib.dump(model.fit(X, y), tmp_path / "hgb.joblib", compress=3)
    report = scan_file(tmp_path / "hgb.joblib")
    assert report.clean, [g.describe() for g in report.flagged]
    assert any(g.name == "_BinMapper" for g in report.globals) and any(g.name == "log1p" for g in report.globals)

    torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())).save(tmp_path / "ts.pt")
    assert not scan_file(tmp_path / "ts.pt").dangerous

    whole = torch.nn.Sequential(torch.nn.Linear(2, 2))
    whole.act = torch.nn.functional.gelu
    torch.save(whole, tmp_path / "whole.pt")
    report = scan_file(tmp_path / "whole.pt")
    assert not report.dangerous and any(g.name == "gelu" and g.verdict == UNKNOWN for g in report.globals)
    from forgeml.security.loaders import torch_load

    assert isinstance(torch_load(tmp_path / "whole.pt", trust_pickle=True), torch.nn.Module)
