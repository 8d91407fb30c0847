"""The pickle scanner on real pickles built here: malicious ones are flagged and refused and their
payload never runs (it would create a marker file); clean sklearn/torch files pass."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from forgeml.cli import main
from forgeml.errors import InputError
from forgeml.validation.pickle_scan import DANGEROUS, SAFE, UNKNOWN, refuse_unsafe, scan_bytes, scan_file


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
    with pytest.raises(InputError, match="--trust-pickle"):
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

    result = forgeml.convert(str(jl), targets=["onnx"], passes=[], trust_pickle=True, out_dir=tmp_path / "out",
                             inputs=[{"X": np.random.default_rng(1).normal(5, 2, (16, 4)).astype(np.float32)}])
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
