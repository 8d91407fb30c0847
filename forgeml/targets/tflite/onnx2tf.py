"""ONNX → a tf_keras model with onnx2tf, run hermetically: no network, nothing from PATH.

onnx2tf (1.28.8) reaches outside the process in three places; each is closed here:

- it shells out to an ``onnxsim`` executable found on PATH: ``not_use_onnxsim=True`` (forgeml's own
  ``simplify`` pass has already run onnxsim in-process on the IR);
- when every input looks like a batch of NHWC images it downloads a sample-image ``.npy`` from
  GitHub (``download_test_image_data``) to drive its shape checks: we hand it *our* inputs instead
  (the calibration batches, or the parity inputs), laid out as it expects;
- its own TFLite writer renames I/O tensors with a downloaded ``flatc`` and ``curl``: we stop at the
  Keras model (``disable_model_save=True``) and write the .tflite ourselves with TensorFlow's
  converter and a serving signature carrying the source names (``tflite_convert``).

The layout map (which inputs and outputs onnx2tf made channel-last) is worked out here and proved
on a sample: the Keras model's outputs, mapped back, must match onnxruntime's on the same input.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from forgeml.runtime.quiet import quiet
from forgeml.runtime.quiet import native_quiet
from forgeml.errors import TargetError, first_line, require
from forgeml.formats.tflite import TensorMap
from forgeml.runtime import InputSet

log = logging.getLogger(__name__)

_ONNX2TF_IMAGE_ROWS = 20  # onnx2tf slices its sample images to the model's batch (<= 20)
_SCOPES, _CLASSES, _TRACE = ("pkg.torch.onnx.name_scopes", "pkg.torch.onnx.class_hierarchy",
                             "pkg.torch.onnx.stack_trace")


def unsupported_ops(proto, layers: dict[str, str] | None = None) -> list[str]:
    """One line per ONNX node onnx2tf has no lowering for: op, node, and source layer if known."""
    spec = importlib.util.find_spec("onnx2tf")  # finds the package without importing it (and TensorFlow)
    ops_dir = Path(next(iter(spec.submodule_search_locations))) / "ops" if spec else None
    out = []
    have: dict[str, bool] = {}
    for node in proto.graph.node:
        key = (node.domain or "") + "::" + node.op_type
        if key not in have:
            have[key] = node.domain in ("", "ai.onnx") and ops_dir is not None and \
                (ops_dir / f"{node.op_type}.py").is_file()
        if not have[key]:
            out.append(_describe_node(node, layers))
    return out


def _describe_node(node, layers: dict[str, str] | None) -> str:
    op = (node.domain + "::" if node.domain not in ("", "ai.onnx") else "") + node.op_type
    text = f"op {op} (node {node.name or '<unnamed>'!r}"
    layer = (layers or {}).get(node.name) or source_layer({p.key: p.value for p in node.metadata_props})
    if layer:
        text += f", source layer {layer}"
    return text + ")"


def node_layers(model) -> dict[str, str]:
    """node name → source layer, from an ``onnx_ir.Model`` whose nodes still carry the exporter's
    metadata (the converter's IR: onnxsim in the simplify pass drops it, but keeps node names)."""
    out = {}
    for node in model.graph:
        layer = source_layer(dict(node.metadata_props))
        if node.name and layer:
            out[node.name] = layer
    return out


def source_layer(props: dict[str, str]) -> str:
    """``bn1 (torch.nn.modules.batchnorm.BatchNorm2d) at torch_models.py:52`` from the torch
    exporter's node metadata; empty when the node carries none."""
    scopes, classes = _as_list(props.get(_SCOPES)), _as_list(props.get(_CLASSES))
    text = ""
    if scopes or classes:
        path = ".".join(s for s in scopes[1:-1] if s)  # module path; the last scope is the op itself
        if path:
            text = f"{path} ({classes[-2]})" if len(classes) >= 2 else path
        elif classes:
            text = f"{classes[0]}.forward ({classes[-1]})" if len(classes) >= 2 else classes[0]
    elif props.get("namespace"):
        text = props["namespace"].strip(" :")
    frames = re.findall(r'File "([^"]+)", line (\d+)', props.get(_TRACE, ""))
    if text and frames:  # the innermost frame: the line in the layer's own forward
        text += f" at {Path(frames[-1][0]).name}:{frames[-1][1]}"
    return text


def _as_list(text: str | None) -> list[str]:
    import ast

    if not text:
        return []
    try:
        v = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    return [str(x) for x in v] if isinstance(v, (list, tuple)) else []


@dataclass
class Lowered:
    """What one onnx2tf run made: the Keras model, the source↔Keras maps, and how far the Keras model's
    outputs (mapped back) are from onnxruntime's on the first sample (``mismatch``: the worst output's
    max abs error over its max abs value; 0 is exact)."""

    model: object
    inputs: list[TensorMap]
    outputs: list[TensorMap]
    version: str
    mismatch: float


def to_keras(proto, samples: Sequence[InputSet], scratch: Path, *, keep_layout: bool,
             layers: dict[str, str] | None = None) -> Lowered:
    """Convert with onnx2tf.

    ``samples`` are source-layout input sets (at least one); they replace onnx2tf's downloaded
    sample images, prove the layout map and measure ``Lowered.mismatch``. ``layers`` (node name →
    source layer) names the source layer in errors.
    """
    if importlib.util.find_spec("onnx2tf") is None:
        require("onnx2tf", "tflite")
    bad = unsupported_ops(proto, layers)
    if bad:
        raise TargetError("tflite: onnx2tf cannot lower " + "; ".join(bad[:5])
                          + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
                          + ". Remove or replace that layer, or convert to another target")
    with native_quiet():
        require("tensorflow", "tflite")
        require("onnx2tf", "tflite")
    from importlib.metadata import version

    names = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    outputs = [o.name for o in proto.graph.output]
    kept = set(names) if keep_layout else set()
    with quiet("onnx2tf", "tensorflow", "absl"), native_quiet(), \
            _hermetic(_sample_images(samples, names, keep_layout)):
        import onnx2tf

        try:
            model = onnx2tf.convert(
                onnx_graph=proto,
                output_folder_path=str(scratch),
                not_use_onnxsim=True,
                disable_model_save=True,
                keep_shape_absolutely_input_names=[n for n in names if n in kept] or None,
                non_verbose=True,
                verbosity="error",
            )
        except SystemExit as e:  # onnx2tf exits on bad options and some unsupported graphs
            raise TargetError(f"tflite: onnx2tf gave up on the model (exit {e.code}); run with --debug to see "
                              "its log") from e
        except Exception as e:
            raise TargetError(_failure(proto, e, layers)) from e
    if model is None:
        raise TargetError("tflite: onnx2tf returned no model; run with --debug to see its log")
    ins = _input_maps(proto, names, model, kept)
    outs, mismatch = _output_maps(proto, outputs, model, ins, samples[0])
    return Lowered(model, ins, outs, version("onnx2tf"), mismatch)


def _failure(proto, e: Exception, layers: dict[str, str] | None) -> str:
    node_name = getattr(e, "onnx_op_name", None)
    where = ""
    if node_name:
        for node in proto.graph.node:
            if node.name == node_name or _sanitized(node.name) == node_name:
                where = " at " + _describe_node(node, layers)
                break
        else:
            where = f" at node {node_name!r}"
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    # Keras wraps the real reason in "Exception encountered when calling layer …": skip that line.
    first = next((ln for ln in lines if not ln.startswith("Exception encountered")), lines[0] if lines else "")
    return f"tflite: onnx2tf failed{where}: {type(e).__name__}: {first[:300]}"


def _sanitized(name: str) -> str:
    return re.sub("^/", "wa/", name.replace(":", "__"))


@contextlib.contextmanager
def _hermetic(images: np.ndarray):
    """Give onnx2tf our sample images instead of its download, for the duration only."""
    mod = importlib.import_module("onnx2tf.onnx2tf")
    saved = getattr(mod, "download_test_image_data", None)
    if saved is None:  # the hook moved: this onnx2tf might download, so refuse rather than risk it
        from importlib.metadata import version

        raise TargetError(f"tflite: onnx2tf {version('onnx2tf')} is not a version forgeml can run offline; "
                          "install the pinned one: pip install 'onnx2tf==1.28.8'")

    def ours() -> np.ndarray:
        log.debug("onnx2tf asked for sample images; gave it %s from the run's own inputs", images.shape)
        return images

    mod.download_test_image_data = ours
    try:
        yield
    finally:
        mod.download_test_image_data = saved


def _sample_images(samples: Sequence[InputSet], names: list[str], keep_layout: bool) -> np.ndarray:
    """The first 4-D input of every sample, channel-last, as float32 rows (at least 20 of them)."""
    rows = []
    for s in samples:
        for n in names:
            a = s.get(n)
            if a is not None and a.ndim == 4:
                rows.append(np.asarray(a if keep_layout else a.transpose(0, 2, 3, 1), dtype=np.float32))
                break
    if not rows:
        return np.zeros((_ONNX2TF_IMAGE_ROWS, 1, 1, 3), np.float32)
    data = np.concatenate(rows)
    reps = -(-_ONNX2TF_IMAGE_ROWS // len(data))
    return np.concatenate([data] * reps)[: max(_ONNX2TF_IMAGE_ROWS, len(data))]


def channels_last(rank: int) -> tuple[int, ...]:
    return (0, *range(2, rank), 1)


def _fits(shape: Sequence, dims: Sequence) -> bool:
    return len(shape) == len(dims) and all(a is None or b is None or not isinstance(a, int)
                                           or not isinstance(b, int) or a == b for a, b in zip(shape, dims))


def _onnx_shape(value_info) -> tuple:
    t = value_info.type.tensor_type
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)


def _onnx_dtype(value_info) -> str:
    import onnx

    return onnx.helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type).name


def _keras_shape(t) -> tuple:
    return tuple(None if d is None else int(d) for d in t.shape)


def _input_maps(proto, names, model, kept: set[str]) -> list[TensorMap]:
    by_name = {i.name: i for i in proto.graph.input}
    if len(model.inputs) != len(names):
        raise TargetError(f"tflite: onnx2tf made a model with {len(model.inputs)} inputs from {len(names)}")
    maps = []
    for name, k in zip(names, model.inputs):
        src, dst = _onnx_shape(by_name[name]), _keras_shape(k)
        perm = None
        if name not in kept and len(src) in (3, 4, 5) and _fits([src[i] for i in channels_last(len(src))], dst):
            perm = channels_last(len(src))
        elif not _fits(src, dst):
            raise TargetError(f"tflite: cannot tell how onnx2tf laid out input {name!r}: ONNX shape {list(src)}, "
                              f"TensorFlow shape {list(dst)}")
        maps.append(TensorMap(name, name, perm, src, dst, _onnx_dtype(by_name[name]), k.dtype.name))
    return maps


def _layouts(src: tuple, dst: tuple) -> list[tuple[int, ...] | None]:
    """Every ``perm`` with ``src.transpose(perm)`` shaped like ``dst``: same layout first, channel-last
    next, then the rest (onnx2tf sometimes leaves an output in another order, e.g. after a reduction
    that dropped the channel axis)."""
    import itertools

    out: list = [None] if _fits(src, dst) else []
    if len(src) in (3, 4, 5) and _fits([src[i] for i in channels_last(len(src))], dst):
        out.append(channels_last(len(src)))
    if 2 <= len(src) <= 5:
        for p in itertools.permutations(range(len(src))):
            if list(p) != sorted(p) and p != channels_last(len(src)) and _fits([src[i] for i in p], dst):
                out.append(p)
    return out


def _output_maps(proto, outputs, model, ins: list[TensorMap], sample: InputSet) -> tuple[list[TensorMap], float]:
    """Which layout each Keras output is in (decided by shape and, where shapes can't tell, by numbers),
    and how far the Keras model is from onnxruntime on ``sample`` (see ``Lowered.mismatch``)."""
    from forgeml.runtime.ort import ort_runner

    keras_outs = list(model.outputs)
    if len(keras_outs) != len(outputs):
        raise TargetError(f"tflite: onnx2tf made a model with {len(keras_outs)} outputs from {len(outputs)}")
    by_name = {o.name: o for o in proto.graph.output}
    feeds = [np.asarray(m.to_tflite(sample[m.source])).astype(m.tflite_dtype) for m in ins]
    try:
        with quiet("tensorflow"), native_quiet():
            got = model(feeds if len(feeds) > 1 else feeds[0], training=False)
    except Exception as e:
        raise TargetError(f"tflite: the model onnx2tf made fails on the example inputs: {type(e).__name__}: "
                          f"{first_line(e)}") from e
    got = [np.asarray(g) for g in (got if isinstance(got, (list, tuple)) else [got])]
    ref = ort_runner(proto.SerializeToString())(sample)
    maps, worst = [], 0.0
    for i, (name, k) in enumerate(zip(outputs, keras_outs)):
        src, dst = _onnx_shape(by_name[name]), _keras_shape(k)
        c = _layouts(src, dst)
        if not c:
            raise TargetError(f"tflite: onnx2tf output {name!r} has TensorFlow shape {list(dst)}, "
                              f"which is no layout of the ONNX shape {list(src)}")

        def err(p, g=got[i], r=np.asarray(ref[name])):
            back = g if p is None else g.transpose(np.argsort(p))
            if back.shape != r.shape:
                return float("inf")
            if r.dtype == bool or back.dtype == bool:
                return float(np.count_nonzero(back != r))
            return float(np.abs(back.astype(np.float64) - r).max()) if r.size else 0.0

        perm = min(c, key=err) if len(c) > 1 else c[0]
        r = np.asarray(ref[name])
        scale = float(np.abs(r.astype(np.float64)).max()) if r.size and r.dtype != bool else 1.0
        worst = max(worst, err(perm) / max(scale, 1e-12))
        maps.append(TensorMap(name, name, perm, src, dst, _onnx_dtype(by_name[name]), k.dtype.name))
    return maps, worst
