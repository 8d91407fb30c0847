"""Every example convention (tuple of inputs, bare array, DataFrame, dict by input name) works for
scikit-learn estimators exactly as it does for torch, through ``python:`` functions and in memory."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

import forgeml
from forgeml.errors import InputError

pytest.importorskip("skl2onnx")


def _iris():
    from sklearn.datasets import load_iris

    d = load_iris()
    return d.data.astype(np.float32), d.target


def _estimators():
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    X, y = _iris()
    return {"logreg": LogisticRegression(max_iter=500).fit(X, y), "ridge": Ridge().fit(X, y),
            "tree": DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y),
            "scaler": StandardScaler().fit(X)}


CONVENTIONS = {
    "tuple": lambda X: (X,),
    "list": lambda X: [X],
    "array": lambda X: X,
    "dict": lambda X: {"X": X},
    "rows": lambda X: X.tolist(),
}


@pytest.mark.parametrize("name, convention", [(n, "tuple") for n in ("logreg", "ridge", "tree", "scaler")]
                         + [("logreg", c) for c in sorted(CONVENTIONS) if c != "tuple"])
def test_in_memory_conventions(tmp_path, name, convention):
    X, _ = _iris()
    model = _estimators()[name]
    r = forgeml.convert(model, CONVENTIONS[convention](X[:32]), targets=["onnx"], passes=[],
                        out_dir=tmp_path / "o")
    assert r.ok, r.parity.table()
    assert r.manifest["signature"]["inputs"][0]["name"] == "X"
    for row in r.manifest["stages"][-1]["parity"]["rows"]:
        if row["output"] == "label":
            assert row["exact_match"] == 1.0


def test_python_function_returning_model_and_tuple(tmp_path, monkeypatch):
    mod = tmp_path / "sk_user_mod.py"
    mod.write_text(textwrap.dedent("""
        import numpy as np
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        def build():
            d = load_iris()
            X = d.data.astype(np.float32)
            return LogisticRegression(max_iter=500).fit(X, d.target), (X[:32],)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        r = forgeml.convert("python:sk_user_mod:build", targets=["onnx"], passes=[], out_dir=tmp_path / "o")
    finally:
        sys.modules.pop("sk_user_mod", None)
    assert r.ok, r.parity.table()
    assert r.manifest["signature"]["inputs"][0]["name"] == "X"


def test_dataframe_model_takes_frame_tuple_of_columns_and_dict():
    pd = pytest.importorskip("pandas")
    from sklearn.linear_model import LogisticRegression

    X, y = _iris()
    cols = ["a", "b", "c", "d"]
    df = pd.DataFrame(X, columns=cols)
    model = LogisticRegression(max_iter=500).fit(df, y)
    from forgeml.converters.base import ImportOptions
    from forgeml.converters.sklearn import SklearnConverter

    for example in ((df[:16],), df[:16], {c: df[c][:16].to_numpy() for c in cols},
                    tuple(df[c][:16] for c in cols)):
        res = SklearnConverter().convert(model, example, "mem", ImportOptions())
        assert sorted(res.example_inputs) == cols
        assert all(a.shape == (16, 1) for a in res.example_inputs.values())
        out = res.reference(res.example_inputs)
        assert np.array_equal(out["label"], model.predict(df[:16]))


def test_wrong_count_of_tensors_is_one_readable_line():
    X, _ = _iris()
    model = _estimators()["logreg"]
    with pytest.raises(InputError, match="2 tensors.*takes one input X"):
        forgeml.convert(model, (X[:4], X[:4]), targets=["onnx"])
