"""scikit-learn → ONNX with real scikit-learn as the reference: zoo pipelines on the bundled datasets,
files, and the bad inputs users hit."""

from __future__ import annotations

import numpy as np
import pytest

import forgeml
from forgeml.cli.app import main
from forgeml.errors import ConversionError, InputError
from forgeml.runtime.ort import ort_runner

pytest.importorskip("skl2onnx")


def _rows(result, stage=0):
    return {r["output"]: r for r in result.manifest["stages"][stage]["parity"]["rows"]}


@pytest.mark.parametrize("name", ["sk_iris", "sk_digits", "sk_breast_cancer", "sk_diabetes"])
def test_zoo_pipelines_convert_with_parity(tmp_path, name):
    result = forgeml.convert(f"zoo:{name}", targets=["onnx"], out_dir=tmp_path / "out")
    assert result.ok, result.parity.table()
    m = result.manifest
    assert m["source"]["kind"] == "sklearn" and m["stages"][0]["parity"]["reference"].startswith("scikit-learn")
    assert m["stages"][0]["parity"]["batches"] == 4
    for stage in m["stages"]:
        for row in stage["parity"]["rows"]:
            assert row["passed"] and row["max_abs"] < 1e-4, (stage["name"], row)
            if row["output"] == "label":
                assert row["exact_match"] == 1.0
    names = [o["name"] for o in m["signature"]["outputs"]]
    assert names == (["variable"] if name == "sk_diabetes" else ["label", "probabilities"])
    # ZipMap would make probabilities a sequence of maps; here it is a plain float tensor.
    assert m["signature"]["outputs"][-1]["dtype"] == "float32"


def test_held_out_accuracy_is_the_same_in_onnx(tmp_path):
    from models_zoo.sklearn_models import build_iris, iris_data

    build = build_iris()
    _, X_test, _, y_test = iris_data()
    result = forgeml.convert(build.model, build.example_inputs, targets=["onnx"], passes=[], out_dir=tmp_path / "o")
    labels, proba = (lambda out: (out["label"], out["probabilities"]))(
        ort_runner(result.artifacts["onnx"].path)({"X": X_test}))
    sk_acc = float((build.model.predict(X_test) == y_test).mean())
    assert np.array_equal(labels, build.model.predict(X_test))
    assert float((labels == y_test).mean()) == sk_acc > 0.9
    np.testing.assert_allclose(proba, build.model.predict_proba(X_test), atol=1e-5)


def test_dataframe_with_string_column_and_classifier_without_proba(tmp_path):
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.normal(40, 10, 200), "income": rng.normal(50, 20, 200),
                          "city": rng.choice(["paris", "lima", "oslo"], 200)})
    y = ((frame["age"] > 40) ^ (frame["city"] == "lima")).astype(int)
    model = make_pipeline(ColumnTransformer([("num", StandardScaler(), ["age", "income"]),
                                            ("cat", OneHotEncoder(), ["city"])]), LinearSVC()).fit(frame, y)
    result = forgeml.convert(model, frame.head(32), targets=["onnx"], passes=[], out_dir=tmp_path / "o")
    assert result.ok, result.parity.table()
    sig = result.manifest["signature"]
    assert [(i["name"], i["dtype"]) for i in sig["inputs"]] == [("age", "float32"), ("income", "float32"),
                                                                 ("city", "object")]
    assert [o["name"] for o in sig["outputs"]] == ["label", "scores"]
    assert _rows(result)["label"]["exact_match"] == 1.0


def test_skops_file(tmp_path):
    sio = pytest.importorskip("skops.io")
    from models_zoo.sklearn_models import build_iris

    f = tmp_path / "iris.skops"
    sio.dump(build_iris().model, f)
    assert main(["convert", str(f), "-o", str(tmp_path / "out"), "--passes", ""]) == 0
    result = forgeml.convert(str(f), targets=["onnx"], passes=[], out_dir=tmp_path / "out2")
    assert result.ok and len(result.manifest["source"]["sha256"]) == 64


def test_safetensors_says_there_are_no_tensors(tmp_path):
    result = forgeml.convert("zoo:sk_iris", targets=["onnx", "safetensors"], passes=[], out_dir=tmp_path / "o")
    assert "onnx" in result.artifacts and "safetensors" not in result.artifacts
    assert "no weight tensors" in result.errors["safetensors"] and ".skops" in result.errors["safetensors"]
    assert result.exit_code == 2


def test_not_fitted_and_unsupported(tmp_path):
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    with pytest.raises(InputError, match="LogisticRegression is not fitted"):
        forgeml.convert(LogisticRegression(), np.zeros((2, 3), np.float32), out_dir=tmp_path / "a")

    class Doubler(TransformerMixin, BaseEstimator):
        def fit(self, X, y=None):
            self.n_features_in_ = X.shape[1]
            return self

        def transform(self, X):
            return X * 2

    X = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    model = make_pipeline(Doubler(), LogisticRegression()).fit(X, X[:, 0] > 0)
    with pytest.raises(ConversionError, match="no converter for Doubler"):
        forgeml.convert(model, X, out_dir=tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_string_class_labels_are_compared_as_text(tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = LogisticRegression(max_iter=500).fit(X, names)
    result = forgeml.convert(model, X[::5].astype(np.float32), passes=[], out_dir=tmp_path / "o")
    assert result.ok
    label = _rows(result)["label"]
    assert label["exact_match"] == 1.0 and result.manifest["signature"]["outputs"][0]["dtype"] == "object"


def test_exported_dataframe_model_converts_from_its_skops_file(tmp_path):
    from models_zoo.export import export

    path, _ = export("sk_breast_cancer", tmp_path / "bc")
    assert path.suffix == ".skops"
    # No example rows: the string column's values come from the encoder's categories.
    assert main(["convert", str(path), "-o", str(tmp_path / "out"), "--passes", ""]) == 0


def test_clusterer_gives_cluster_ids_and_distances(tmp_path):
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_iris

    import forgeml

    X = load_iris().data.astype(np.float32)
    km = KMeans(n_clusters=3, n_init=4, random_state=0).fit(X)
    r = forgeml.convert(km, X[:8], targets=["onnx"], out_dir=tmp_path / "o")
    assert r.ok, r.parity.table()
    rows = {row["output"]: row for row in r.manifest["stages"][-1]["parity"]["rows"]}
    assert rows["label"]["exact_match"] == 1.0
    assert rows["scores"]["max_abs"] < 1e-4
