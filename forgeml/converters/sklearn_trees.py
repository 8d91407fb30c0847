"""scikit-learn tree ensembles skl2onnx cannot convert, built here from the fitted trees as ONNX-ML
``TreeEnsembleRegressor`` nodes plus plain ONNX ops for the link and the labels.

Covers HistGradientBoostingClassifier/Regressor (skl2onnx 1.20 fails on scikit-learn 1.9's
predictors) and IsolationForest (skl2onnx gives no ``score_samples``). The graphs compute what the
estimator's own methods define:

- HGB: raw = baseline + sum of tree leaves (leaf values already carry the learning rate); a node
  sends ``x <= num_threshold`` left and NaN the way its ``missing_go_to_left`` says; the classifier's
  ``predict_proba`` is the loss's inverse link (sigmoid for two classes, softmax otherwise) and
  ``predict`` the class of the highest probability. Categorical splits are refused.
- IsolationForest: each tree's leaf holds its node depth (root = 1) + c(leaf size) - 1 (sklearn's path length with
  the average-path correction), ``score_samples = -2 ** (-sum / (n_trees * c(max_samples_)))``,
  ``decision_function = score_samples - offset_``, ``predict`` 1 where it is >= 0, else -1.

Thresholds are float64 in scikit-learn and inputs float32 here: each threshold is rounded *down* to
the nearest float32, so ``x <= t32`` holds for exactly the float32 ``x`` with ``x <= t64``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forgeml.errors import ConversionError

ML_DOMAIN = "ai.onnx.ml"


@dataclass
class _Ensemble:
    """Flat node lists of a TreeEnsembleRegressor, filled tree by tree."""

    n_targets: int
    tree: list[int] = field(default_factory=list)
    node: list[int] = field(default_factory=list)
    feature: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    mode: list[str] = field(default_factory=list)
    true: list[int] = field(default_factory=list)
    false: list[int] = field(default_factory=list)
    missing_true: list[int] = field(default_factory=list)
    t_tree: list[int] = field(default_factory=list)
    t_node: list[int] = field(default_factory=list)
    t_id: list[int] = field(default_factory=list)
    t_weight: list[float] = field(default_factory=list)
    n_trees: int = 0

    def add_tree(self, left, right, feature, threshold, missing_left, leaf_value, target: int) -> None:
        """One binary tree; ``left[i] < 0`` marks a leaf. Node ids are the tree's own indices."""
        t = self.n_trees
        self.n_trees += 1
        for i in range(len(left)):
            self.tree.append(t)
            self.node.append(i)
            if left[i] < 0:
                self.feature.append(0)
                self.value.append(0.0)
                self.mode.append("LEAF")
                self.true.append(0)
                self.false.append(0)
                self.missing_true.append(0)
                self.t_tree.append(t)
                self.t_node.append(i)
                self.t_id.append(target)
                self.t_weight.append(float(leaf_value[i]))
            else:
                self.feature.append(int(feature[i]))
                self.value.append(_f32_floor(float(threshold[i])))
                self.mode.append("BRANCH_LEQ")
                self.true.append(int(left[i]))
                self.false.append(int(right[i]))
                self.missing_true.append(int(bool(missing_left[i])))

    def node_proto(self, x: str, out: str, base_values):
        from onnx import helper

        return helper.make_node(
            "TreeEnsembleRegressor", [x], [out], domain=ML_DOMAIN, name="forgeml_trees",
            nodes_treeids=self.tree, nodes_nodeids=self.node, nodes_featureids=self.feature,
            nodes_values=self.value, nodes_modes=self.mode, nodes_truenodeids=self.true,
            nodes_falsenodeids=self.false, nodes_missing_value_tracks_true=self.missing_true,
            target_treeids=self.t_tree, target_nodeids=self.t_node, target_ids=self.t_id,
            target_weights=self.t_weight, n_targets=self.n_targets, aggregate_function="SUM",
            base_values=[float(v) for v in base_values], post_transform="NONE")


def _f32_floor(t: float) -> float:
    f = np.float32(t)
    if float(f) > t:
        f = np.nextafter(f, np.float32(-np.inf))
    return float(f)


def supports(model) -> bool:
    return type(model).__name__ in ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor",
                                    "IsolationForest")


def build(model, n_features: int, opset: int | None):
    """(ModelProto with input ``X`` [batch, n_features] float32, output names) for a supported estimator."""
    name = type(model).__name__
    if name == "IsolationForest":
        nodes, outputs, out_types = _isolation_forest(model)
    elif name.startswith("HistGradientBoosting"):
        nodes, outputs, out_types = _hgb(model)
    else:  # pragma: no cover - callers check supports()
        raise ConversionError(f"sklearn->onnx: forgeml builds no tree ensemble for a {name}")
    return _model(nodes, n_features, outputs, out_types, opset), [o for o, _ in outputs]


def _model(nodes, n_features, outputs, out_types, opset):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [n for n, _ in nodes], "forgeml_sklearn_trees",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info(o, out_types[o], ["batch", *dims]) for o, dims in outputs],
        initializer=[t for _, ts in nodes for t in ts])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(opset or 17, 13)),
                                                   helper.make_opsetid(ML_DOMAIN, 3)],
                             producer_name="forgeml")


def _const(name: str, value) -> object:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(value), name)


def _hgb(model):
    from onnx import TensorProto, helper

    if getattr(model, "is_categorical_", None) is not None and np.any(model.is_categorical_):
        raise ConversionError(f"sklearn->onnx: the {type(model).__name__} has categorical splits; neither skl2onnx "
                              f"nor forgeml converts them (fit it with categorical_features=None, encoding the "
                              f"categories as numbers, to convert it)")
    k = int(model.n_trees_per_iteration_)
    ens = _Ensemble(n_targets=k)
    for iteration in model._predictors:
        for target, predictor in enumerate(iteration):
            n = predictor.nodes
            if np.any(n["is_categorical"]):
                raise ConversionError(f"sklearn->onnx: the {type(model).__name__} has categorical splits, which "
                                      f"forgeml does not convert")
            left = np.where(n["is_leaf"].astype(bool), -1, n["left"].astype(np.int64))
            ens.add_tree(left, n["right"], n["feature_idx"], n["num_threshold"], n["missing_go_to_left"],
                         n["value"], target)
    base = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
    nodes = [(ens.node_proto("X", "raw", base), [])]
    link = type(model._loss).__name__
    if type(model).__name__ == "HistGradientBoostingRegressor":
        if link in ("HalfSquaredError", "AbsoluteError", "PinballLoss", "HuberLoss"):
            nodes.append((helper.make_node("Identity", ["raw"], ["variable"]), []))
        elif link in ("HalfPoissonLoss", "HalfGammaLoss", "HalfTweedieLoss", "HalfTweedieLossIdentity"):
            if link == "HalfTweedieLossIdentity":
                nodes.append((helper.make_node("Identity", ["raw"], ["variable"]), []))
            else:
                nodes.append((helper.make_node("Exp", ["raw"], ["variable"]), []))
        else:
            raise ConversionError(f"sklearn->onnx: the HistGradientBoostingRegressor's loss {link} has a link "
                                  f"forgeml does not convert")
        return nodes, [("variable", [1])], {"variable": TensorProto.FLOAT}
    if link == "HalfBinomialLoss":
        nodes += [(helper.make_node("Sigmoid", ["raw"], ["p1"]), []),
                  (helper.make_node("Sub", ["one", "p1"], ["p0"]), [_const("one", np.float32(1.0))]),
                  (helper.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1), [])]
    elif link == "HalfMultinomialLoss":
        nodes.append((helper.make_node("Softmax", ["raw"], ["probabilities"], axis=1), []))
    else:
        raise ConversionError(f"sklearn->onnx: the HistGradientBoostingClassifier's loss {link} has a link forgeml "
                              f"does not convert")
    classes = np.asarray(model.classes_)
    if classes.dtype.kind not in "iub":
        raise ConversionError("sklearn->onnx: forgeml's own tree ensemble takes integer class labels; this "
                              f"HistGradientBoostingClassifier has {classes.dtype} classes")
    nodes += [(helper.make_node("ArgMax", ["probabilities"], ["index"], axis=1, keepdims=0), []),
              (helper.make_node("Gather", ["classes", "index"], ["label"], axis=0),
               [_const("classes", classes.astype(np.int64))])]
    return nodes, [("label", []), ("probabilities", [len(classes)])], \
        {"label": TensorProto.INT64, "probabilities": TensorProto.FLOAT}


def _average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): the average path length of an unsuccessful search in a binary search tree of n points,
    the normalisation of the isolation forest paper (0 for n <= 1, 1 for n == 2)."""
    from numpy import euler_gamma

    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    two = n == 2
    big = n > 2
    out[two] = 1.0
    out[big] = 2.0 * (np.log(n[big] - 1.0) + euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _isolation_forest(model):
    from onnx import TensorProto, helper

    ens = _Ensemble(n_targets=1)
    for est, features in zip(model.estimators_, model.estimators_features_):
        t = est.tree_
        depth = np.asarray(t.compute_node_depths(), dtype=np.float64)  # the root counts 1, as sklearn scores it
        leaf = depth + _average_path_length(t.n_node_samples) - 1.0
        feat = np.asarray(features)[np.maximum(t.feature, 0)]
        ens.add_tree(t.children_left, t.children_right, feat, t.threshold, np.zeros(t.node_count), leaf, 0)
    denominator = len(model.estimators_) * float(_average_path_length(np.array([model.max_samples_]))[0])
    nodes = [
        (ens.node_proto("X", "depths", [0.0]), []),
        (helper.make_node("Div", ["depths", "denominator"], ["ratio"]),
         [_const("denominator", np.float32(denominator))]),
        (helper.make_node("Neg", ["ratio"], ["neg_ratio"]), []),
        (helper.make_node("Pow", ["two", "neg_ratio"], ["pow"]), [_const("two", np.float32(2.0))]),
        (helper.make_node("Neg", ["pow"], ["score_samples"]), []),
        (helper.make_node("Sub", ["score_samples", "offset"], ["scores"]),
         [_const("offset", np.float32(model.offset_))]),
        (helper.make_node("Less", ["scores", "zero"], ["outlier"]), [_const("zero", np.float32(0.0))]),
        (helper.make_node("Where", ["outlier", "minus_one", "plus_one"], ["label2d"]),
         [_const("minus_one", np.int64(-1)), _const("plus_one", np.int64(1))]),
        (helper.make_node("Squeeze", ["label2d", "axis1"], ["label"]), [_const("axis1", np.array([1], np.int64))]),
    ]
    return nodes, [("label", []), ("scores", [1]), ("score_samples", [1])], \
        {"label": TensorProto.INT64, "scores": TensorProto.FLOAT, "score_samples": TensorProto.FLOAT}
