"""The scikit-learn zoo: pipelines trained on the datasets scikit-learn ships (no download), so the
accuracy on the held-out split means something. Seeded; the example inputs are the held-out rows."""

from __future__ import annotations

import warnings

import numpy as np

from models_zoo import ZooBuild

SEED = 0


def _fit(model, X, y):
    """Train with one BLAS thread: a matrix product split over more threads sums in another order, so
    PCA's components and the MLP's weights (and every artifact made from them) would follow the thread
    count of whoever builds the zoo model (a 1-CPU batch worker vs a process using every core)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return model.fit(X, y)


def _split(X, y, stratify=True):
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=0.25, random_state=SEED, stratify=y if stratify else None)


def iris_data():
    """(X_train, X_test, y_train, y_test), float32 features."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return _split(X.astype(np.float32), y)


def digits_data():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return _split(X.astype(np.float32), y)


def breast_cancer_data():
    """A DataFrame of ten numeric measurements plus a categorical column (tumour size class, strings)."""
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    cols = [str(c).replace(" ", "_") for c in data.feature_names[:10]]
    frame = pd.DataFrame(data.data[:, :10].astype(np.float32), columns=cols)
    frame["size_class"] = np.where(frame["mean_area"] > 1000, "large",
                                   np.where(frame["mean_area"] > 500, "medium", "small")).astype(object)
    return _split(frame, data.target)


def diabetes_data():
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    return _split(X.astype(np.float32), y, stratify=False)


def build_iris() -> ZooBuild:
    """StandardScaler + LogisticRegression: labels and probabilities for 3 classes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X_train, X_test, y_train, _ = iris_data()
    model = _fit(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), X_train, y_train)
    return ZooBuild(model, {"X": X_test}, ["label", "probabilities"])


def build_digits() -> ZooBuild:
    """StandardScaler + PCA + MLPClassifier on 8x8 digit images (64 features, 10 classes)."""
    from sklearn.decomposition import PCA
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X_train, X_test, y_train, _ = digits_data()
    model = make_pipeline(StandardScaler(), PCA(n_components=32, random_state=SEED),
                          MLPClassifier(hidden_layer_sizes=(64,), max_iter=200, random_state=SEED))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _fit(model, X_train, y_train)
    return ZooBuild(model, {"X": X_test}, ["label", "probabilities"])


def build_breast_cancer() -> ZooBuild:
    """ColumnTransformer (scaled numeric columns + one-hot string column) + RandomForestClassifier."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X_train, X_test, y_train, _ = breast_cancer_data()
    numeric = [c for c in X_train.columns if c != "size_class"]
    prep = ColumnTransformer([("num", StandardScaler(), numeric),
                              ("cat", OneHotEncoder(handle_unknown="ignore"), ["size_class"])])
    model = _fit(make_pipeline(prep, RandomForestClassifier(n_estimators=25, max_depth=6, random_state=SEED)),
                 X_train, y_train)
    examples = {c: X_test[[c]].to_numpy().astype(object if c == "size_class" else np.float32)
                for c in X_test.columns}
    return ZooBuild(model, examples, ["label", "probabilities"])


def build_diabetes() -> ZooBuild:
    """StandardScaler + Ridge regression on the diabetes progression target."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X_train, X_test, y_train, _ = diabetes_data()
    model = _fit(make_pipeline(StandardScaler(), Ridge(alpha=1.0)), X_train, y_train)
    return ZooBuild(model, {"X": X_test}, ["variable"])
