"""PyTorch → ONNX IR: nn.Module, .pt2 ExportedProgram, TorchScript .pt, and (trusted) pickled modules.

Route: the dynamo exporter (``torch.onnx.export(dynamo=True)``), which hands back an ``onnx_ir.Model``
directly; if it fails, the TorchScript exporter, and the provenance names the fallback and why.
TorchScript archives go straight to the TorchScript exporter (dynamo cannot trace them).
"""

from __future__ import annotations

import copy
import inspect
import io
import zipfile
from pathlib import Path

import numpy as np

from forgeml.ir import ConvertResult

from forgeml.converters.base import ImportOptions
from forgeml.runtime.quiet import quiet
from forgeml.errors import ConversionError, InputError, first_line, require
from forgeml.ir import IRModel, Provenance, Signature, sha256_arrays, sha256_file, signature_of
from forgeml.runtime import InputSet
from forgeml.parity.inputs import check_inputs, example_from_spec
from forgeml.runtime.torch import torch_runner

_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "torch._export", "onnxscript", "torch.fx")


def _torch():
    return require("torch", "torch")


class TorchWeights:
    """state_dict of the source module; ``runner_with`` loads other weights into a copy of it."""

    def __init__(self, module, input_names: list[str], output_names: list[str]):
        import torch

        self.framework = f"torch {torch.__version__.split('+')[0]}"
        self._module = module
        self._inputs, self._outputs = input_names, output_names

    def named(self) -> dict[str, np.ndarray]:
        out = {}
        for k, v in self._module.state_dict().items():
            t = v.detach().cpu()
            if t.dtype.is_floating_point and t.dtype not in (_torch().float32, _torch().float64, _torch().float16):
                t = t.float()  # bfloat16 & co. have no numpy dtype
            out[k] = t.numpy()
        return out

    def runner_with(self, weights: dict[str, np.ndarray]):
        import torch

        clone = copy.deepcopy(self._module)
        state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}
        try:
            clone.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ConversionError(f"the weights do not fit the source module: {first_line(e, with_type=True, root=True)}") from e
        return torch_runner(clone, self._inputs, self._outputs)


class TorchConverter:
    name = "torch"
    suffixes = (".pt2", ".pt", ".pth", ".ts")

    def accepts(self, obj: object) -> bool:
        return any(c.__module__.startswith("torch.") for c in type(obj).__mro__) and hasattr(obj, "forward")

    def convert(self, source, example_inputs: InputSet | None, ref: str,
                options: ImportOptions) -> ConvertResult:
        torch = _torch()
        version = torch.__version__.split("+")[0]
        if isinstance(source, Path):
            module, example_inputs, kind = _load_file(source, example_inputs, options)
            digest = sha256_file(source)
        else:
            module, kind = source, "module"
            digest = ""
        if kind == "exported":
            exported, module = module, module.module()
        else:
            exported = None
            if hasattr(module, "eval"):
                module.eval()
        input_names = _input_names(module if exported is None else exported, example_inputs, options)
        example = _example_arrays(example_inputs, input_names, options)
        output_names = _output_names(module, example, input_names, options)
        reference = torch_runner(module, input_names, output_names)
        if not digest:
            digest = sha256_arrays({k: v.detach().cpu().float().numpy() if v.is_floating_point() else v.cpu().numpy()
                                    for k, v in module.state_dict().items()})

        args = tuple(torch.from_numpy(example[n]) for n in input_names)
        onnx_model, route, fallback = _export(module if exported is None else exported, args, input_names,
                                    output_names, options, torchscript_only=(kind == "torchscript"))
        sig = signature_of(onnx_model)
        _check_names(sig, input_names, output_names)
        provenance = Provenance("torch", ref, digest, f"torch {version}", route, fallback)
        ir = IRModel(onnx_model, sig, provenance)
        # Reference dtypes are checked against the graph's, so a wrong example dtype fails here, early.
        check_inputs(example, sig, "example inputs")
        return ConvertResult(ir=ir, reference=reference, reference_name=f"torch {version} eager",
                             example_inputs=example,
                             weights=TorchWeights(module, input_names, output_names),
                             source_model=exported if exported is not None else module)


# --- loading files ---------------------------------------------------------------------------

def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except zipfile.BadZipFile:
        return []


def _load_file(path: Path, example_inputs, options: ImportOptions):
    torch = _torch()
    names = _zip_names(path)
    if path.suffix == ".pt2" or any(n.rsplit("/", 1)[-1] == "archive_format" for n in names):
        if not names:
            raise InputError(f"{path}: not a .pt2 archive (not a zip file); save one with torch.export.save")
        from forgeml.security.loaders import torch_export_load

        try:
            with quiet(*_LOGGERS):
                ep = torch_export_load(path, options.trust_pickle)
        except InputError:
            raise
        except Exception as e:
            raise InputError(f"{path}: torch.export.load failed: {first_line(e, with_type=True, root=True)}") from e
        if example_inputs is None and getattr(ep, "example_inputs", None):
            args, kwargs = ep.example_inputs
            sig_names = [s.arg.name for s in ep.graph_signature.input_specs
                         if s.kind.name == "USER_INPUT"]
            example_inputs = {n: a for n, a in zip(sig_names, args)}
        return ep, example_inputs, "exported"
    if any(n.endswith("/code/") or "/code/" in n for n in names) or any(n.endswith("constants.pkl") for n in names):
        try:
            with quiet(*_LOGGERS):
                return torch.jit.load(str(path), map_location="cpu"), example_inputs, "torchscript"
        except Exception as e:
            raise InputError(f"{path}: not a loadable TorchScript archive: {first_line(e, with_type=True, root=True)}") from e
    if names or _is_legacy_pickle(path):
        return _load_pickled(path, example_inputs, options), example_inputs, "module"
    raise InputError(f"{path}: not a torch file (neither a .pt2 archive, TorchScript, nor torch.save output)")


def _is_legacy_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"


def _load_pickled(path: Path, example_inputs, options: ImportOptions):
    """torch.save output: weights-only first; a whole pickled module only with `options.trust_pickle`."""
    from forgeml.security.loaders import torch_load

    torch = _torch()
    obj = torch_load(path, options.trust_pickle)
    if isinstance(obj, torch.nn.Module):
        return obj
    if isinstance(obj, dict):
        raise InputError(f"{path}: holds only weights (a state_dict of {len(obj)} tensors), not a model; "
                         f"name the model instead as python:module:function, which builds it and loads them")
    raise InputError(f"{path}: holds a {type(obj).__name__}, not a torch.nn.Module")


# --- names and inputs --------------------------------------------------------------------------

def _input_names(module, example_inputs, options: ImportOptions) -> list[str]:
    if isinstance(example_inputs, dict):
        return list(example_inputs)
    if options.input_specs and example_inputs is None:
        return [s.name for s in options.input_specs]
    forward = getattr(module, "forward", None)
    try:
        params = [p for p in inspect.signature(forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    n = 1 if example_inputs is None or not isinstance(example_inputs, (tuple, list)) else len(example_inputs)
    names = [p.name for p in params[:n]]
    return names + [f"input_{i}" for i in range(len(names), n)]


def _example_arrays(example_inputs, input_names: list[str], options: ImportOptions) -> InputSet:
    torch = _torch()
    if example_inputs is None:
        if not options.input_specs:
            raise InputError("no example inputs: pass them to forgeml.convert(), or give `options.input_specs` name:DIMS:dtype "
                             "for every model input")
        rng = np.random.default_rng(0)
        return {s.name: example_from_spec(s, rng) for s in options.input_specs}
    if isinstance(example_inputs, dict):
        values = list(example_inputs.values())
    elif isinstance(example_inputs, (tuple, list)):
        values = list(example_inputs)
    else:
        values = [example_inputs]
    out = {}
    for name, v in zip(input_names, values):
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy()
        if not isinstance(v, np.ndarray):
            raise InputError(f"example input {name!r} is a {type(v).__name__}; give a numpy array or torch tensor")
        out[name] = v
    return out


def _output_names(module, example: InputSet, input_names: list[str], options: ImportOptions) -> list[str]:
    torch = _torch()
    with torch.inference_mode(), quiet(*_LOGGERS):
        try:
            out = module(*(torch.from_numpy(example[n]) for n in input_names))
        except Exception as e:
            raise InputError(f"the torch model failed on the example inputs: {type(e).__name__}: "
                             f"{first_line(e, with_type=True, root=True)}") from e
    if isinstance(out, dict) or hasattr(out, "keys"):
        natural = list(out.keys())
    elif isinstance(out, (tuple, list)):
        natural = [f"output_{i}" for i in range(len(out))]
    else:
        natural = ["output"]
    if options.output_names:
        if len(options.output_names) != len(natural):
            raise InputError(f"{len(options.output_names)} output names given but the model returns {len(natural)} "
                             f"outputs")
        return list(options.output_names)
    return natural


def _check_names(sig: Signature, input_names: list[str], output_names: list[str]) -> None:
    if sig.input_names != input_names or sig.output_names != output_names:
        raise ConversionError(
            f"torch->onnx: the exported graph's names {sig.input_names} -> {sig.output_names} do not match "
            f"the source's {input_names} -> {output_names}")


# --- export ------------------------------------------------------------------------------------

def _export(model, args, input_names, output_names, options: ImportOptions, *, torchscript_only: bool):
    """Export with dynamo; fall back to the TorchScript exporter and say so.

    Returns (model, route, fallback): ``fallback`` is why dynamo failed, empty when nothing fell back
    (a TorchScript archive takes the TorchScript exporter by design, not as a fallback)."""
    torch = _torch()
    import onnx_ir

    if not torchscript_only:
        dynamic_shapes = None
        if options.dynamic_batch:
            batch = torch.export.Dim("batch")
            dynamic_shapes = tuple({0: batch} for _ in args)
        try:
            with quiet(*_LOGGERS):
                program = torch.onnx.export(
                    model, args, dynamo=True, input_names=input_names, output_names=output_names,
                    dynamic_shapes=dynamic_shapes, opset_version=options.opset, optimize=True,
                    external_data=False, verbose=False,
                )
            return program.model, "dynamo", ""
        except Exception as e:  # the exporter raises many types; the route records why
            reason = first_line(e, with_type=True, root=True)
            if not hasattr(model, "forward") or not isinstance(model, torch.nn.Module):
                raise ConversionError(f"torch->onnx: the dynamo exporter failed: {reason}") from e
            fallback_reason = reason
    else:
        fallback_reason = ""
    buf = io.BytesIO()
    dynamic_axes = {n: {0: "batch"} for n in input_names + output_names} if options.dynamic_batch else None
    try:
        with quiet(*_LOGGERS):
            torch.onnx.export(model, args, buf, dynamo=False, input_names=input_names,
                              output_names=output_names, dynamic_axes=dynamic_axes,
                              opset_version=options.opset or 17)
    except Exception as e:
        tried = f"dynamo: {fallback_reason}; " if fallback_reason else ""
        raise ConversionError(f"torch->onnx: the TorchScript exporter failed ({tried}torchscript: "
                              f"{first_line(e, with_type=True, root=True)})") from e
    import onnx

    proto = onnx.load_from_string(buf.getvalue())
    route = f"torchscript (fallback: {fallback_reason})" if fallback_reason else "torchscript (TorchScript archive)"
    return onnx_ir.serde.deserialize_model(proto), route, fallback_reason


