"""scikit-learn → ONNX IR: fitted estimators and Pipelines (ColumnTransformer included), ``.skops``
files, and pickle-based ``.pkl``/``.joblib`` files behind the pickle scanner and ``options.trust_pickle``.

Route: ``skl2onnx.to_onnx`` with explicit input types. Classifiers give two plain tensors,
``label`` (int64, or string for string classes) and ``probabilities`` (no ZipMap dict), or ``scores``
(``decision_function``) for classifiers without ``predict_proba``; regressors and transformers give
``variable``. Input features: a model fitted on a pandas DataFrame (``feature_names_in_``) takes one
``[batch, 1]`` input per column, string columns as string tensors; otherwise one float32 input ``X``
of ``[batch, n_features_in_]``. The batch axis is always dynamic: estimators take any number of rows.

The reference runner is scikit-learn itself: ``predict``/``predict_proba``/``decision_function``/
``predict``/``transform`` on the same rows.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from forgeml.ir import ConvertResult

from forgeml.converters.base import ImportOptions
from forgeml.converters._common import ir_from_proto
from forgeml.runtime.quiet import quiet
from forgeml.errors import ConversionError, InputError, TargetError, first_line, require
from forgeml.ir import Provenance, sha256_file
from forgeml.runtime import InputSet, Runner
from forgeml.parity.inputs import check_inputs

log = logging.getLogger(__name__)

_LOGGERS = ("skl2onnx", "sklearn")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


def _sklearn():
    return require("sklearn", "sklearn")


class NoTensorWeights:
    """scikit-learn keeps its fitted state in estimator objects, not named tensors: say so plainly.

    The safetensors target calls ``named()``; the TargetError it gets names the alternatives.
    """

    def __init__(self, estimator):
        import sklearn

        self.framework = f"scikit-learn {sklearn.__version__}"
        self._what = type(estimator).__name__

    def named(self) -> dict[str, np.ndarray]:
        raise TargetError(f"safetensors: a scikit-learn {self._what} has no weight tensors to save (its fitted "
                          f"state is estimator objects, not named arrays); use `targets` onnx, and keep the "
                          f"estimator itself as a .skops file (skops.io.dump)")

    def runner_with(self, weights: dict[str, np.ndarray]) -> Runner:
        raise TargetError("safetensors: scikit-learn models cannot be rebuilt from tensors")


class SklearnConverter:
    name = "sklearn"
    suffixes = (".skops", *PICKLE_SUFFIXES)

    def accepts(self, obj: object) -> bool:
        return hasattr(obj, "fit") and any(c.__module__.split(".")[0] == "sklearn" for c in type(obj).__mro__)

    def convert(self, source, example_inputs, ref: str, options: ImportOptions) -> ConvertResult:
        sklearn = _sklearn()
        require("skl2onnx", "sklearn")
        digest = ""
        if isinstance(source, Path):
            model = load_sklearn_file(source, options)
            digest = sha256_file(source)
        else:
            model = source
        if not self.accepts(model):
            raise InputError(f"{ref}: holds a {type(model).__name__}, not a scikit-learn estimator")
        _check_fitted(model, ref)
        example_inputs = _unwrap_examples(model, example_inputs)
        columns = _frame_columns(model, example_inputs)
        examples = _examples(model, columns, example_inputs)
        kind, outputs = _outputs(model)
        proto, route = _convert_any(model, columns, examples, kind, options)
        input_names = list(examples)
        reference = _reference(model, columns, kind, outputs, proto)
        if not digest:
            digest = _estimator_digest(model)
        ir = ir_from_proto(proto, input_names, outputs,
                           Provenance("sklearn", ref, digest, f"scikit-learn {sklearn.__version__}", route),
                           "sklearn->onnx")
        check_inputs(examples, ir.signature, "example inputs")
        method = {"proba": "predict + predict_proba", "scores": "predict + decision_function",
                  "regressor": "predict", "cluster": "predict + transform", "transformer": "transform",
                  "outlier": "predict + decision_function + score_samples"}[kind]
        return ConvertResult(ir=ir, reference=reference, reference_name=f"scikit-learn {sklearn.__version__} "
                             f"{method}", example_inputs=examples, weights=NoTensorWeights(model),
                             source_model=model)


# --- loading -------------------------------------------------------------------------------------

def load_sklearn_file(path: Path, options: ImportOptions):
    """.skops through skops (types checked, nothing executed); pickles only after the scanner and with
    `options.trust_pickle`."""
    import zipfile

    if path.suffix.lower() == ".skops" or zipfile.is_zipfile(path):  # skops files are zips; pickles are not
        return _load_skops(path, options)
    from forgeml.security.loaders import joblib_load

    return joblib_load(path, options.trust_pickle)


def _load_skops(path: Path, options: ImportOptions):
    sio = require("skops.io", "sklearn")
    try:
        untrusted = sio.get_untrusted_types(file=str(path))
    except Exception as e:
        raise InputError(f"{path}: not a readable .skops file ({type(e).__name__}: {e})") from e
    from forgeml.security.pickle_scan import SAFE, classify

    # Types on the pickle scanner's allow-list (scikit-learn and numpy classes, e.g. the tree
    # structure of a forest) are trusted here too; anything else needs the user's word.
    unknown = [t for t in untrusted if classify(*t.rsplit(".", 1)) != SAFE] if untrusted else []
    if unknown and not options.trust_pickle:
        raise InputError(f"{path}: the .skops file uses types that are not on forgeml's allow-list: "
                         f"{', '.join(unknown)}; pass `options.trust_pickle` only if you trust its author")
    try:
        return sio.load(str(path), trusted=untrusted or None)
    except Exception as e:
        raise InputError(f"{path}: skops could not load it: {type(e).__name__}: {e}") from e


# --- checks, inputs, outputs -----------------------------------------------------------------------

def _check_fitted(model, ref: str) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError as e:
        raise InputError(f"{ref}: the {type(model).__name__} is not fitted; call .fit(X, y) before converting "
                         f"it") from e
    except TypeError as e:
        raise InputError(f"{ref}: {e}") from e


def _frame_columns(model, example_inputs) -> list[tuple[str, str]] | None:
    """[(column, dtype)] for a model fitted on a DataFrame; None for a plain array model."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return None
    names = [str(n) for n in names]
    strings = _string_columns(model)
    out = []
    for n in names:
        dtype = "float32"
        if example_inputs is not None and _has_column(example_inputs, n):
            kind = np.asarray(_column(example_inputs, n)).dtype.kind  # pandas strings/categories: object
            dtype = "object" if kind in "OUS" else "int64" if kind in "iu" else "float32"
        elif n in strings:
            dtype = "object"
        out.append((n, dtype))
    return out


def _string_columns(model) -> dict[str, list]:
    """Columns that a ColumnTransformer sends to an encoder fitted on strings, with their categories."""
    found: dict[str, list] = {}
    for trans, cols in _column_transformers(model):
        cats = _find_attr(trans, "categories_")
        if cats is not None:
            for c, cat in zip(cols, cats):
                if np.asarray(cat).dtype.kind in "OUS":
                    found[str(c)] = [str(v) for v in cat]
    return found


def _column_stats(model) -> dict[str, tuple[float, float]]:
    """(mean, std) of numeric columns a fitted StandardScaler saw: realistic example rows."""
    found: dict[str, tuple[float, float]] = {}
    for trans, cols in _column_transformers(model):
        mean, scale = _find_attr(trans, "mean_"), _find_attr(trans, "scale_")
        if mean is not None and scale is not None and len(mean) == len(cols):
            for c, m, sd in zip(cols, mean, scale):
                found[str(c)] = (float(m), float(sd) if sd else 1.0)
    return found


def _column_transformers(model):
    for est in _walk(model):
        for _, trans, cols in getattr(est, "transformers_", []) or []:
            if hasattr(trans, "fit") and isinstance(cols, (list, tuple, np.ndarray)):
                yield trans, list(cols)


def _find_attr(trans, attr: str):
    value = getattr(trans, attr, None)
    if value is None and hasattr(trans, "steps"):
        value = next((getattr(s, attr) for _, s in trans.steps if getattr(s, attr, None) is not None), None)
    return value


def _walk(est):
    yield est
    for _, step in getattr(est, "steps", []) or []:
        if hasattr(step, "fit"):
            yield from _walk(step)
    for _, trans, _cols in getattr(est, "transformers_", []) or []:
        if hasattr(trans, "fit"):
            yield from _walk(trans)
    inner = getattr(est, "estimator_", None) or getattr(est, "regressor_", None)
    if inner is not None and hasattr(inner, "fit"):
        yield from _walk(inner)


def _unwrap_examples(model, example_inputs):
    """Every framework's example convention to what an estimator takes: a tuple/list of inputs (as
    ``python:`` functions return for torch, ``(X,)``), a bare array, a DataFrame, or a dict by input name.

    A one-element tuple/list whose element is itself an array or a frame is that array/frame; a
    tuple of several arrays for a DataFrame model maps positionally onto ``feature_names_in_``.
    """
    if not isinstance(example_inputs, (tuple, list)) or not example_inputs:
        return example_inputs
    tensors = all(hasattr(e, "to_numpy") or getattr(e, "ndim", 0) >= 2 for e in example_inputs)
    if not tensors:
        return example_inputs  # a list of rows: an array-like of numbers
    if len(example_inputs) == 1:
        return example_inputs[0]
    names = getattr(model, "feature_names_in_", None)
    if names is not None and len(names) == len(example_inputs):
        return {str(n): e for n, e in zip(names, example_inputs)}
    raise InputError(f"example inputs are {len(example_inputs)} tensors; the {type(model).__name__} takes one "
                     f"input X" + (f" or its {len(names)} columns" if names is not None else ""))


def _has_column(example, name: str) -> bool:
    try:
        return name in example
    except TypeError:
        return False


def _column(example, name: str):
    col = example[name]
    return col.to_numpy() if hasattr(col, "to_numpy") else col


def _examples(model, columns, example_inputs) -> InputSet:
    if columns is not None:
        if example_inputs is None:
            return _frame_examples(model, columns)
        out = {}
        for name, dtype in columns:
            if not _has_column(example_inputs, name):
                raise InputError(f"the example inputs have no column {name!r}; the estimator was fitted on "
                                 f"{[c for c, _ in columns]}")
            col = np.asarray(_column(example_inputs, name)).reshape(-1, 1)
            out[name] = col.astype(object) if dtype == "object" else col.astype(dtype)
        return out
    n = getattr(model, "n_features_in_", None)
    if example_inputs is None:
        if n is None:
            raise InputError(f"the {type(model).__name__} does not say how many features it takes; pass example "
                             f"inputs to forgeml.convert()")
        return {"X": np.random.default_rng(0).normal(size=(4, int(n))).astype(np.float32)}
    if isinstance(example_inputs, dict):
        if len(example_inputs) != 1:
            raise InputError(f"a scikit-learn model fitted on an array takes one input, got {list(example_inputs)}")
        example_inputs = next(iter(example_inputs.values()))
    if hasattr(example_inputs, "detach"):  # a torch tensor, as torch's example convention passes it
        example_inputs = example_inputs.detach().cpu().numpy()
    x = np.asarray(example_inputs.to_numpy() if hasattr(example_inputs, "to_numpy") else example_inputs)
    if x.ndim != 2 or (n is not None and x.shape[1] != n):
        raise InputError(f"example inputs have shape {x.shape}; the {type(model).__name__} takes "
                         f"(rows, {n if n is not None else 'features'})")
    if x.dtype.kind not in "fiub":
        raise InputError(f"example inputs have dtype {x.dtype}; a model fitted on an array takes numbers")
    return {"X": x.astype(np.float32)}


def _frame_examples(model, columns) -> InputSet:
    """Example rows for a DataFrame model loaded from a file: string columns cycle through the
    categories its encoders learned, numeric ones follow a fitted scaler's statistics when there is one."""
    rng = np.random.default_rng(0)
    rows = 8
    strings, stats = _string_columns(model), _column_stats(model)
    out = {}
    for name, dtype in columns:
        if dtype == "object":
            cats = strings.get(name) or ["a"]
            out[name] = np.array([cats[i % len(cats)] for i in range(rows)], dtype=object).reshape(-1, 1)
        else:
            mean, sd = stats.get(name, (0.0, 1.0))
            out[name] = rng.normal(mean, sd, size=(rows, 1)).astype(dtype)
    return out


def _outputs(model) -> tuple[str, list[str]]:
    from sklearn.base import is_classifier, is_clusterer, is_outlier_detector, is_regressor

    if is_classifier(model):
        return ("proba", ["label", "probabilities"]) if hasattr(model, "predict_proba") else \
            ("scores", ["label", "scores"])
    if is_regressor(model):
        return "regressor", ["variable"]
    if is_outlier_detector(model):
        return "outlier", ["label", "scores", "score_samples"]
    if is_clusterer(model) and hasattr(model, "transform"):
        return "cluster", ["label", "scores"]  # skl2onnx: cluster ids and distances to the centres
    if hasattr(model, "transform"):
        return "transformer", ["variable"]
    raise InputError(f"the {type(model).__name__} is neither a classifier, a regressor nor a transformer")


def _convert_any(model, columns, examples: InputSet, kind: str, options: ImportOptions):
    """(proto, route): skl2onnx first; forgeml's own tree ensembles where skl2onnx fails on one of
    them or has no converter giving the outputs (outlier detectors' ``score_samples``)."""
    from forgeml.converters import sklearn_trees

    if kind != "outlier":
        try:
            return _to_onnx(model, columns, examples, kind, options), "skl2onnx"
        except ConversionError as e:
            if not sklearn_trees.supports(model):
                raise
            log.info("skl2onnx failed (%s); building the tree ensemble from the fitted trees", e)
    elif not sklearn_trees.supports(model):
        raise InputError(f"the {type(model).__name__} is an outlier detector forgeml has no converter for "
                         f"(forgeml converts IsolationForest)")
    if any(str(a.dtype) != "float32" for a in examples.values()):
        raise ConversionError(f"sklearn->onnx: forgeml's own tree ensemble for the {type(model).__name__} takes "
                              f"numeric inputs only")
    n = sum(a.shape[1] for a in examples.values())
    proto, _ = sklearn_trees.build(model, n, options.opset)
    if columns is not None:
        _concat_columns(proto, list(examples))
    return proto, "forgeml tree ensemble"


def _allowed_options(est) -> dict:
    try:
        from skl2onnx._supported_operators import sklearn_operator_name_map
        from skl2onnx.common._registration import get_converter

        return dict(get_converter(sklearn_operator_name_map[type(est)]).get_allowed_options() or {})
    except Exception:  # unknown to skl2onnx: to_onnx will say so with the class name
        return {}


def _zipmap_options(model) -> dict:
    """No ZipMap on any classifier. Every classifier gets an explicit entry: skl2onnx's Pipeline parser
    adds ``zipmap=True`` to classifiers it finds without one, even those that do not accept it."""
    from sklearn.base import is_classifier

    out = {}
    for est in _walk(model):
        if is_classifier(est) and not hasattr(est, "steps"):
            allowed = _allowed_options(est)
            out[id(est)] = {"zipmap": False} if "zipmap" in allowed else {"nocl": False} if "nocl" in allowed else {}
    return out


def _to_onnx(model, columns, examples: InputSet, kind: str, options: ImportOptions):
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    types = {"float32": FloatTensorType, "int64": Int64TensorType, "object": StringTensorType}
    # Always any number of rows: that is how every estimator is called, and a file gives no batch size.
    initial = [(n, types[str(a.dtype)]([None, a.shape[1]])) for n, a in examples.items()]
    # A plain estimator fitted on a numeric DataFrame takes one matrix in skl2onnx: convert it on X
    # and put the per-column inputs in front with a Concat.
    concat = len(initial) > 1 and not any(True for _ in _column_transformers(model)) and \
        all(str(a.dtype) == "float32" for a in examples.values())
    if concat:
        initial = [("X", FloatTensorType([None, sum(a.shape[1] for a in examples.values())]))]
    try:
        with quiet(*_LOGGERS):
            proto = to_onnx(model, initial_types=initial, options=_zipmap_options(model) or None,
                            target_opset=options.opset)
    except Exception as e:
        raise _explain(model, e) from e
    if concat:
        _concat_columns(proto, list(examples))
    if kind == "scores":
        _rename_output(proto, proto.graph.output[1].name, "scores")
    for v in list(proto.graph.input) + list(proto.graph.output):
        dims = v.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    return proto


def _concat_columns(proto, names: list[str]) -> None:
    from onnx import helper

    x = proto.graph.input[0]
    inner = "X__columns"
    _rename_input(proto, x.name, inner)
    del proto.graph.input[:]
    for n in names:
        proto.graph.input.append(helper.make_tensor_value_info(n, 1, ["batch", 1]))
    proto.graph.node.insert(0, helper.make_node("Concat", names, [inner], axis=1, name="forgeml_columns"))


def _rename_input(proto, old: str, new: str) -> None:
    for node in proto.graph.node:
        node.input[:] = [new if i == old else i for i in node.input]


def _explain(model, e: Exception) -> ConversionError:
    text = first_line(e)
    import re

    m = re.search(r"<class '([^']+)'>", text)
    if m and ("shape calculator" in text or "converter" in text.lower()):
        culprit = m.group(1).rsplit(".", 1)[-1]
        return ConversionError(f"sklearn->onnx: skl2onnx has no converter for {culprit} ({m.group(1)}); replace "
                               f"it with an estimator skl2onnx supports, or register a converter for it with "
                               f"skl2onnx.update_registered_converter")
    return ConversionError(f"sklearn->onnx: skl2onnx failed on the {type(model).__name__}: "
                           f"{type(e).__name__}: {text}")


def _rename_output(proto, old: str, new: str) -> None:
    for node in proto.graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for out in proto.graph.output:
        if out.name == old:
            out.name = new


def _reference(model, columns, kind: str, output_names: list[str], proto) -> Runner:
    """Run the estimator on the same rows; labels in the ONNX graph's label dtype."""
    label_dtype = None
    if kind in ("proba", "scores"):
        elem = proto.graph.output[0].type.tensor_type.elem_type
        label_dtype = np.int64 if elem == 7 else object

    def frame(inputs: InputSet):
        if columns is None:
            return inputs["X"]
        pd = require("pandas", "sklearn")
        return pd.DataFrame({n: (inputs[n].reshape(-1) if dtype != "object"
                                 else inputs[n].reshape(-1).astype(str)) for n, dtype in columns})

    def run(inputs: InputSet) -> dict[str, np.ndarray]:
        x = frame(inputs)
        if kind == "regressor":
            y = np.asarray(model.predict(x))
            return {"variable": y.reshape(len(y), -1)}
        if kind == "cluster":
            return {"label": np.asarray(model.predict(x)).astype(np.int64),
                    "scores": np.asarray(model.transform(x))}
        if kind == "outlier":
            return {"label": np.asarray(model.predict(x)).astype(np.int64),
                    "scores": np.asarray(model.decision_function(x)).reshape(-1, 1),
                    "score_samples": np.asarray(model.score_samples(x)).reshape(-1, 1)}
        if kind == "transformer":
            y = model.transform(x)
            y = y.toarray() if hasattr(y, "toarray") else np.asarray(y)
            return {"variable": y}
        labels = np.asarray(model.predict(x)).astype(label_dtype)
        second = model.predict_proba(x) if kind == "proba" else model.decision_function(x)
        second = np.asarray(second)
        if second.ndim == 1:
            second = second.reshape(-1, 1)
        return {output_names[0]: labels, output_names[1]: second}

    return run


def _estimator_digest(model) -> str:
    import hashlib
    import pickle

    # Hash of the estimator's own pickle, made here from an object already in memory (nothing loaded).
    try:
        return hashlib.sha256(pickle.dumps(model, protocol=4)).hexdigest()
    except Exception:  # an estimator holding an unpicklable object: hash its parameters instead
        return hashlib.sha256(repr(model.get_params()).encode()).hexdigest()
