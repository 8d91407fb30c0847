"""TensorFlow / Keras → ONNX IR: in-memory Keras models, ``.keras``/``.h5`` files, SavedModel directories.

Route, the same for every kind: a ``tf.function`` concrete function (for Keras models, one traced
here around ``model(x, training=False)`` with named inputs and a dict of named outputs; for a
SavedModel, the chosen serving signature) is frozen with ``tf2onnx.tf_loader`` and converted with
``tf2onnx.convert.from_graph_def``. Not tf2onnx's ``from_keras``: it fails on Keras 3 Sequential
models (KeyError on a keras_tensor name). tf2onnx keeps ops it cannot convert as TensorFlow ops
(``continue_on_error``), so the graph is checked here and such ops are a ConversionError.

The reference runner is TensorFlow itself: the Keras model called eagerly, or the signature function.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from forgeml.ir import ConvertResult

from forgeml.converters.base import ImportOptions
from forgeml.converters._common import ir_from_proto
from forgeml.runtime.quiet import native_quiet, quiet
from forgeml.errors import ConversionError, InputError, first_line, require
from forgeml.ir import Provenance, sha256_arrays, sha256_file
from forgeml.runtime import InputSet, Runner
from forgeml.parity.inputs import check_inputs

log = logging.getLogger(__name__)

_LOGGERS = ("tensorflow", "tf2onnx", "absl", "keras")
DEFAULT_SIGNATURE = "serving_default"


def _tf():
    with native_quiet():
        return require("tensorflow", "tensorflow")


def _is_keras_model(obj: object) -> bool:
    return any(c.__module__.split(".")[0] in ("keras", "tf_keras") and c.__name__ in ("Model", "Sequential")
               for c in type(obj).__mro__)


# --- weights -----------------------------------------------------------------------------------

def _weight_name(w) -> str:
    name = getattr(w, "path", None) or w.name  # Keras 3: "dense/kernel"; tf-keras: "dense/kernel:0"
    return name[:-2] if name.endswith(":0") else name


class KerasWeights:
    """The model's weights under Keras's own names (``layer/kernel``); ``runner_with`` runs others.

    ``runner_with`` swaps the given values into the model's variables for each call and restores the
    originals afterwards: that works for every Keras model kind (subclassed models cannot be cloned).
    """

    def __init__(self, variables: list, call: Runner, framework: str):
        self.framework = framework
        self._vars = {_weight_name(v): v for v in variables}
        if len(self._vars) != len(variables):
            raise ConversionError("tensorflow->onnx: the model's weight names are not unique; cannot name them")
        self._call = call

    def named(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v.numpy()) for k, v in self._vars.items()}

    def runner_with(self, weights: dict[str, np.ndarray]) -> Runner:
        missing = sorted(set(self._vars) - set(weights))
        extra = sorted(set(weights) - set(self._vars))
        if missing or extra:
            raise ConversionError(f"the weights do not fit the Keras model: missing {missing[:5]}, "
                                  f"unexpected {extra[:5]}")
        for k, v in self._vars.items():
            if tuple(v.shape) != tuple(weights[k].shape):
                raise ConversionError(f"the weights do not fit the Keras model: {k} has shape "
                                      f"{tuple(weights[k].shape)}, the model expects {tuple(v.shape)}")

        def run(inputs: InputSet) -> dict[str, np.ndarray]:
            saved = self.named()
            try:
                for k, v in self._vars.items():
                    v.assign(weights[k].astype(saved[k].dtype, copy=False))
                return self._call(inputs)
            finally:
                for k, v in self._vars.items():
                    v.assign(saved[k])

        return run


# --- the converter -------------------------------------------------------------------------------

class TensorflowConverter:
    name = "tensorflow"
    suffixes = (".keras", ".h5", ".hdf5")

    def accepts(self, obj: object) -> bool:
        return _is_keras_model(obj)

    def convert(self, source, example_inputs: InputSet | None, ref: str,
                options: ImportOptions) -> ConvertResult:
        _tf()
        with native_quiet():
            if isinstance(source, Path) and source.is_dir():
                return self._saved_model(source, example_inputs, ref, options)
            return self._keras(source, example_inputs, ref, options)

    def _keras(self, source, example_inputs, ref: str, options: ImportOptions) -> ConvertResult:
        tf = _tf()
        digest = ""
        if isinstance(source, Path):
            model = _load_keras_file(source)
            digest = sha256_file(source)
        else:
            model = source
        keras_version = _keras_version(model)
        input_names, examples = _keras_inputs(model, example_inputs, options)
        call, output_names = _keras_call(model, input_names, examples, options)
        specs = [tf.TensorSpec((None, *a.shape[1:]) if options.dynamic_batch else a.shape, a.dtype, name=n)
                 for n, a in examples.items()]

        def serve(*args):
            out = model(_pack(model, input_names, list(args)), training=False)
            return dict(zip(output_names, _flat(out)))

        with quiet(*_LOGGERS):
            concrete = tf.function(serve, input_signature=specs, autograph=False).get_concrete_function()
        proto = _to_onnx(concrete, options, f"Keras {type(model).__name__}")
        weights = KerasWeights(list(model.weights), call, keras_version)
        if not digest:
            digest = sha256_arrays(weights.named())
        framework = f"tensorflow {tf.__version__}, {keras_version}"
        ir = ir_from_proto(proto, input_names, output_names,
                           Provenance("tensorflow", ref, digest, framework, "tf.function -> tf2onnx"), "tensorflow->onnx")
        check_inputs(examples, ir.signature, "example inputs")
        return ConvertResult(ir=ir, reference=call, reference_name=f"{keras_version} (eager, training=False)",
                             example_inputs=examples, weights=weights, source_model=model)

    def _saved_model(self, path: Path, example_inputs, ref: str, options: ImportOptions) -> ConvertResult:
        tf = _tf()
        name = options.signature or DEFAULT_SIGNATURE
        try:
            with quiet(*_LOGGERS):
                loaded = tf.saved_model.load(str(path))
        except Exception as e:
            raise InputError(f"{path}: not a loadable TensorFlow SavedModel: {first_line(e, with_type=True)}") from e
        signatures = dict(getattr(loaded, "signatures", {}) or {})
        if name not in signatures:
            have = ", ".join(sorted(signatures)) or "none"
            raise InputError(f"{path}: the SavedModel has no signature {name!r} (it has: {have}); "
                             f"pick one with `options.signature` NAME")
        fn = signatures[name]
        _, in_specs = fn.structured_input_signature
        input_names = sorted(in_specs)
        out_struct = fn.structured_outputs
        if not isinstance(out_struct, dict):
            raise ConversionError(f"{path}: signature {name!r} does not return named outputs")
        output_names = sorted(out_struct)
        examples = _saved_model_examples(in_specs, input_names, example_inputs, options, path)

        def call(inputs: InputSet) -> dict[str, np.ndarray]:
            out = fn(**{n: tf.constant(inputs[n]) for n in input_names})
            return {n: np.asarray(out[n].numpy()) for n in output_names}

        proto = _to_onnx(fn, options, f"SavedModel signature {name!r}")
        variables = list(getattr(loaded, "variables", []) or [])
        weights = None
        if variables and len({_weight_name(v) for v in variables}) == len(variables):
            weights = KerasWeights(variables, call, f"tensorflow {tf.__version__}")
        framework = f"tensorflow {tf.__version__}"
        ir = ir_from_proto(proto, input_names, output_names,
                           Provenance("tensorflow", ref, _sha256_dir(path), framework, f"SavedModel[{name}] -> tf2onnx"),
                           "tensorflow->onnx")
        check_inputs(examples, ir.signature, "example inputs")
        return ConvertResult(ir=ir, reference=call, reference_name=f"tensorflow {tf.__version__} SavedModel "
                             f"signature {name}", example_inputs=examples, weights=weights, source_model=loaded)


# --- loading -------------------------------------------------------------------------------------

def _load_keras_file(path: Path):
    keras = require("keras", "tensorflow")
    if path.suffix.lower() not in (".keras", ".h5", ".hdf5"):
        return _load_renamed(path)
    try:
        with quiet(*_LOGGERS):
            model = keras.saving.load_model(str(path), compile=False)
    except Exception as e:
        raise InputError(f"{path}: not a loadable Keras model ({first_line(e, with_type=True)}); save one with "
                         f"model.save('model.keras')") from e
    if not _is_keras_model(model):
        raise InputError(f"{path}: holds a {type(model).__name__}, not a Keras model")
    return model


def _load_renamed(path: Path):
    """Keras picks its reader by suffix: a file recognised by content under another name is read
    through a symlink named as Keras expects (HDF5 signature → .h5, a zip → .keras)."""
    import tempfile

    with open(path, "rb") as f:
        h5 = f.read(8) == b"\x89HDF\r\n\x1a\n"
    with tempfile.TemporaryDirectory(prefix="forgeml-keras-") as d:
        link = Path(d) / ("model.h5" if h5 else "model.keras")
        link.symlink_to(path.resolve())
        try:
            return _load_keras_file(link)
        except InputError as e:
            raise InputError(str(e).replace(str(link), str(path))) from e


def _keras_version(model) -> str:
    roots = [c.__module__.split(".")[0] for c in type(model).__mro__]
    root = next((r for r in roots if r in ("keras", "tf_keras")), "keras")  # subclasses live in user modules
    mod = require(root, "tensorflow")
    return f"{'tf-keras' if root == 'tf_keras' else 'keras'} {mod.__version__}"


def _sha256_dir(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


# --- inputs and outputs ----------------------------------------------------------------------------

def _model_input_names(model) -> list[str] | None:
    try:
        tensors = list(model.inputs or [])
    except (AttributeError, ValueError):  # subclassed models have no symbolic inputs
        return None
    if not tensors:
        return None
    names = [str(getattr(t, "name", "")).split(":")[0] for t in tensors]
    if len(names) == 1 and (not names[0] or names[0].startswith("keras_tensor")):
        return ["input"]
    return [n if n and not n.startswith("keras_tensor") else f"input_{i}" for i, n in enumerate(names)]


def _keras_inputs(model, example_inputs, options: ImportOptions) -> tuple[list[str], InputSet]:
    """Input names and example arrays, from the user's examples, `options.input_specs`, or the model's own inputs."""
    known = _model_input_names(model)
    if example_inputs is None:
        if options.input_specs:
            return [s.name for s in options.input_specs], {s.name: _example_for(s.shape, s.dtype, s.name)
                                                           for s in options.input_specs}
        if known is None:
            raise InputError("the Keras model has no known input signature (a subclassed model that was never "
                             "built): pass example inputs to forgeml.convert(), or `options.input_specs` name:DIMS:dtype")
        arrays = {}
        for n, t in zip(known, model.inputs):
            shape = tuple(t.shape)
            if any(d is None for d in shape[1:]):
                raise InputError(f"Keras input {n!r} has unknown dims {shape}; give `options.input_specs` {n}:DIMS:dtype")
            arrays[n] = _example_for((2, *shape[1:]), str(np.dtype(_np_dtype(t.dtype))), n)
        return known, arrays
    if isinstance(example_inputs, dict):
        names = list(example_inputs)
        if known and set(names) == set(known):
            names = known  # call the model with its inputs in its own order
        values = [example_inputs[n] for n in names]
    else:
        values = list(example_inputs) if isinstance(example_inputs, (tuple, list)) else [example_inputs]
        if known and len(known) == len(values):
            names = known
        else:
            names = ["input"] if len(values) == 1 else [f"input_{i}" for i in range(len(values))]
    arrays = {}
    for n, v in zip(names, values):
        if hasattr(v, "numpy") and not isinstance(v, np.ndarray):
            v = v.numpy()
        if not isinstance(v, np.ndarray):
            raise InputError(f"example input {n!r} is a {type(v).__name__}; give a numpy array or tf tensor")
        arrays[n] = v
    return names, arrays


def _np_dtype(dtype) -> str:
    return getattr(dtype, "name", None) or str(dtype)  # Keras 3 gives "float32"; tf-keras a tf.DType


def _example_for(shape, dtype: str, name: str) -> np.ndarray:
    dims = [d if isinstance(d, int) else 2 for d in shape]
    rng = np.random.default_rng(0)
    if dtype.startswith("float"):
        return rng.normal(size=dims).astype(dtype)
    if dtype == "bool":
        return rng.integers(0, 2, size=dims).astype(bool)
    return rng.integers(0, 2, size=dims).astype(dtype)


def _saved_model_examples(in_specs: dict, names: list[str], example_inputs, options: ImportOptions,
                          path: Path) -> InputSet:
    if isinstance(example_inputs, dict):
        return {n: np.asarray(v) for n, v in example_inputs.items()}  # checked against the signature later
    given = {s.name: s for s in options.input_specs}
    out = {}
    for n in names:
        spec = in_specs[n]
        dtype = str(np.dtype(spec.dtype.as_numpy_dtype))
        if n in given:
            out[n] = _example_for(given[n].shape, given[n].dtype, n)
            continue
        shape = list(spec.shape.as_list()) if spec.shape.rank is not None else None
        if shape is None or any(d is None for d in shape[1:]):
            raise InputError(f"{path}: signature input {n!r} has unknown dims {shape}; give `options.input_specs` {n}:DIMS:dtype")
        out[n] = _example_for([2 if shape and shape[0] is None else shape[0], *shape[1:]] if shape else [],
                              dtype, n)
    return out


def _pack(model, names: list[str], args: list):
    """Call a model the way it was built: a dict for a functional model with dict inputs, a list for
    several inputs, the tensor itself for one."""
    try:
        struct = model.input if hasattr(model, "_inputs_struct") else None
    except (AttributeError, ValueError):
        struct = None
    if isinstance(struct, dict) and set(struct) == set(names):
        return dict(zip(names, args))
    return args if len(args) > 1 else args[0]


def _flat(out) -> list:
    if isinstance(out, dict):
        return [out[k] for k in out]
    if isinstance(out, (list, tuple)):
        return list(out)
    return [out]


def _keras_call(model, input_names: list[str], examples: InputSet, options: ImportOptions):
    """The reference runner (eager Keras, ``training=False``) and the output names."""
    tf = _tf()

    def raw(inputs: InputSet):
        args = [tf.constant(np.ascontiguousarray(inputs[n])) for n in input_names]
        return model(_pack(model, input_names, args), training=False)

    try:
        with quiet(*_LOGGERS):
            out = raw(examples)
    except Exception as e:
        raise InputError(f"the Keras model failed on the example inputs: {first_line(e, with_type=True)}") from e
    flat = _flat(out)
    if options.output_names:
        if len(options.output_names) != len(flat):
            raise InputError(f"{len(options.output_names)} output names given but the Keras model returns "
                             f"{len(flat)} outputs")
        names = list(options.output_names)
    elif isinstance(out, dict):
        names = [str(k) for k in out]
    else:
        natural = list(getattr(model, "output_names", None) or [])
        if not natural and type(model).__name__ == "Sequential" and getattr(model, "layers", None):
            natural = [model.layers[-1].name]  # a Sequential's output is its last layer's
        if len(natural) == len(flat) and len(set(natural)) == len(natural):
            names = [str(n) for n in natural]
        else:
            names = ["output"] if len(flat) == 1 else [f"output_{i}" for i in range(len(flat))]

    def call(inputs: InputSet) -> dict[str, np.ndarray]:
        values = _flat(raw(inputs))
        return {n: np.asarray(v) for n, v in zip(names, values)}

    return call, names


# --- conversion ------------------------------------------------------------------------------------

def _to_onnx(concrete, options: ImportOptions, what: str):
    """Freeze a concrete function and convert it; refuse a graph with TensorFlow ops left in it."""
    tf = _tf()
    require("tf2onnx", "tensorflow")
    from tf2onnx import convert, tf_loader

    from forgeml.converters.tf2onnx_order import deterministic, renumber

    # The function's own arguments only: ``concrete.inputs`` also lists its captures after them, and a
    # captured constant (Keras 3's Normalization keeps its mean/variance as plain tensors, as in
    # EfficientNetV2) is not a resource, so filtering by dtype would make it a graph input. Freezing
    # turns every capture into a constant.
    n_args = len(tf.nest.flatten(concrete.structured_input_signature, expand_composites=True))
    input_names = [t.name for t in concrete.inputs[:n_args] if t.dtype != tf.resource]
    output_names = [t.name for t in concrete.outputs if t.dtype != tf.resource]
    rename = convert.tensor_names_from_structed(concrete, input_names, output_names)
    structured = concrete.structured_outputs
    if isinstance(structured, dict) and len(structured) == len(output_names):
        # A concrete function's outputs are its structured outputs flattened (dict keys sorted); a loaded
        # SavedModel signature's specs do not carry the graph tensor names tf2onnx's helper looks for.
        rename.update(zip(output_names, sorted(structured)))
    try:
        with quiet(*_LOGGERS), tf.device("/cpu:0"), deterministic():
            frozen = tf_loader.from_function(concrete, input_names, output_names)
            proto, _ = convert.from_graph_def(frozen, input_names=input_names, output_names=output_names,
                                              tensors_to_rename=rename, opset=options.opset,
                                              custom_op_handlers={"Erfc": (_erfc, [])})
    except Exception as e:
        raise ConversionError(f"tensorflow->onnx: tf2onnx failed on the {what}: {first_line(e, with_type=True)}") from e
    _refuse_leftover_tf_ops(proto, what)
    _name_batch_dims(proto)
    renumber(proto)  # the same bytes from every process, whatever order tf2onnx drew its name numbers in
    return proto


def _erfc(ctx, node, name, args):
    """Erfc, which tf2onnx lacks and Keras 3's exact GELU uses: rewritten as ``1 + (-Erf(x))``."""
    from tf2onnx import utils

    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    node.type = "Erf"
    neg = ctx.insert_new_node_on_output("Neg", node.output[0], name=utils.make_name(f"{node.name}_neg"))
    one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype))
    ctx.insert_new_node_on_output("Add", neg.output[0], name=utils.make_name(f"{node.name}_add"),
                                  inputs=[neg.output[0], one.output[0]])


def _refuse_leftover_tf_ops(proto, what: str) -> None:
    import onnx

    imports = {o.domain: o.version for o in proto.opset_import}
    bad = sorted({n.op_type for n in proto.graph.node
                  if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type, n.domain)}
                 | {f"{n.domain}.{n.op_type}" for n in proto.graph.node
                    if n.domain not in ("", "ai.onnx", "ai.onnx.ml", "com.microsoft") and n.domain not in imports})
    if bad:
        raise ConversionError(f"tensorflow->onnx: tf2onnx could not convert these TensorFlow ops of the {what}: "
                              f"{', '.join(bad)}; try another `options.opset`, or replace them in the model")


def _name_batch_dims(proto) -> None:
    """tf2onnx calls an unknown batch dim ``unk__12``; call it ``batch`` on inputs and outputs."""
    for v in list(proto.graph.input) + list(proto.graph.output):
        dims = v.type.tensor_type.shape.dim
        if dims and dims[0].dim_param.startswith("unk__"):
            dims[0].dim_param = "batch"
