"""forgeml's own tree ensembles where skl2onnx fails: HistGradientBoosting and IsolationForest on
scikit-learn's bundled datasets, compared with the estimator's own methods in onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

import forgeml
from forgeml.errors import ConversionError
from forgeml.runtime.ort import ort_runner

pytest.importorskip("skl2onnx")


def _data(name):
    from sklearn import datasets

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return X.astype(np.float32), y


def _convert(tmp_path, model, X):
    r = forgeml.convert(model, (X[:32],), targets=["onnx"], passes=[], out_dir=tmp_path / "o")
    assert r.ok, r.parity.table()
    return r, ort_runner(r.artifacts["onnx"].path)


@pytest.mark.parametrize("dataset", ["breast_cancer", "iris", pytest.param("digits", marks=pytest.mark.slow)])
def test_hgb_classifier_matches_predict_and_proba(tmp_path, dataset):
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = _data(dataset)
    model = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y)
    r, run = _convert(tmp_path, model, X)
    assert r.manifest["source"]["route"] in ("skl2onnx", "forgeml tree ensemble")
    out = run({"X": X})
    assert np.array_equal(out["label"], model.predict(X))
    assert np.max(np.abs(out["probabilities"] - model.predict_proba(X))) <= 1e-5


def test_hgb_with_missing_values_goes_the_way_each_node_says(tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    X, y = _data("breast_cancer")
    rng = np.random.default_rng(0)
    Xn = X.copy()
    Xn[rng.random(X.shape) < 0.2] = np.nan
    clf = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(Xn, y)
    assert not clf._predictors[0][0].nodes["missing_go_to_left"].all()  # both directions are exercised
    _, run = _convert(tmp_path / "c", clf, Xn)
    out = run({"X": Xn})
    assert np.array_equal(out["label"], clf.predict(Xn))
    assert np.max(np.abs(out["probabilities"] - clf.predict_proba(Xn))) <= 1e-5
    Xd, yd = _data("diabetes")
    Xd[rng.random(Xd.shape) < 0.1] = np.nan
    for loss in ("squared_error", "poisson"):
        reg = HistGradientBoostingRegressor(max_iter=10, loss=loss, random_state=0).fit(Xd, yd)
        _, run = _convert(tmp_path / loss, reg, Xd)
        ref = reg.predict(Xd)
        got = run({"X": Xd})["variable"].reshape(-1)
        assert np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1.0)) <= 1e-5, loss


@pytest.mark.parametrize("dataset", ["iris", "breast_cancer"])
def test_isolation_forest_gives_label_scores_and_score_samples(tmp_path, dataset):
    from sklearn.ensemble import IsolationForest

    X, _ = _data(dataset)
    model = IsolationForest(n_estimators=50, max_features=0.7, random_state=0).fit(X)
    r, run = _convert(tmp_path, model, X)
    assert r.manifest["source"]["route"] == "forgeml tree ensemble"
    assert [o["name"] for o in r.manifest["signature"]["outputs"]] == ["label", "scores", "score_samples"]
    out = run({"X": X})
    assert np.max(np.abs(out["score_samples"].reshape(-1) - model.score_samples(X))) <= 1e-5
    assert np.max(np.abs(out["scores"].reshape(-1) - model.decision_function(X))) <= 1e-5
    assert np.array_equal(out["label"], model.predict(X))
    assert set(np.unique(out["label"])) == {-1, 1}


def test_categorical_hgb_is_refused_in_one_line(tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = _data("iris")
    Xc = X.copy()
    Xc[:, 0] = np.floor(Xc[:, 0])
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0]).fit(Xc, y)
    with pytest.raises(ConversionError, match="categorical"):
        forgeml.convert(model, Xc[:8], targets=["onnx"], out_dir=tmp_path / "o")
