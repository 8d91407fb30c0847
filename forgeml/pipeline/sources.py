"""What the user named → (converter, model object or path, example inputs, output names).

SRC forms: a file (suffix picks the converter), ``zoo:NAME``, ``python:module:function`` (the function
returns a model, or ``(model, example_inputs)``, or a ``models_zoo.ZooBuild``), or an in-memory model.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from forgeml.converters import CONVERTERS, Converter
from forgeml.errors import InputError, require_file


@dataclass
class ResolvedSource:
    converter: Converter
    model: object  # an in-memory model, or a Path for the converter to load
    ref: str
    example_inputs: object | None = None
    output_names: tuple[str, ...] = ()


def resolve(src: object, example_inputs: object | None = None) -> ResolvedSource:
    if isinstance(src, str) and src.startswith("zoo:"):
        return _from_zoo(src[4:])
    if isinstance(src, str) and src.startswith("python:"):
        return _from_python(src)
    if isinstance(src, (str, Path)):
        return _from_path(Path(src), example_inputs)
    return _from_object(src, f"<in-memory {type(src).__module__}.{type(src).__name__}>", example_inputs)


def _from_object(obj: object, ref: str, example_inputs) -> ResolvedSource:
    for conv in CONVERTERS.values():
        if conv.accepts(obj):
            return ResolvedSource(conv, obj, ref, example_inputs)
    raise InputError(f"{ref}: no converter for a {type(obj).__name__}; forgeml imports: {', '.join(CONVERTERS)}")


# Converter kinds whose framework module or extra is not named like the kind itself.
FRAMEWORKS = {"hf": ("transformers", "gguf")}


def _from_zoo(name: str) -> ResolvedSource:
    from models_zoo import ZOO

    if name not in ZOO:
        raise InputError(f"unknown zoo model {name!r}; `forgeml zoo list` shows: {', '.join(ZOO)}")
    entry = ZOO[name]
    if entry.kind not in CONVERTERS:
        raise InputError(f"zoo:{name} is a {entry.kind} model and forgeml has no {entry.kind} converter")
    from forgeml.errors import missing_extra

    # A missing framework says which extra installs it. Only looked up, not imported: the builder
    # imports it (TensorFlow's start-up logging is silenced there).
    module, extra = FRAMEWORKS.get(entry.kind, (entry.kind, entry.kind))
    if importlib.util.find_spec(module) is None:
        raise missing_extra(module, extra)
    built = entry.build()
    return ResolvedSource(CONVERTERS[entry.kind], built.model, f"zoo:{name}", built.example_inputs,
                          tuple(built.output_names))


def _from_python(spec: str) -> ResolvedSource:
    parts = spec.split(":")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise InputError(f"{spec!r}: expected python:module:function or python:path/to/file.py:function")
    _, mod_name, fn_name = parts
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.is_file():
                raise InputError(f"{spec}: no such file {path}")
            modspec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(modspec)
            sys.modules.setdefault(path.stem, module)
            modspec.loader.exec_module(module)
        else:
            module = importlib.import_module(mod_name)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{spec}: importing {mod_name} failed: {type(e).__name__}: {e}") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise InputError(f"{spec}: {mod_name} has no function {fn_name!r}")
    try:
        value = fn()
    except Exception as e:
        raise InputError(f"{spec}: {fn_name}() raised {type(e).__name__}: {e}") from e
    from models_zoo import ZooBuild

    if isinstance(value, ZooBuild):
        r = _from_object(value.model, spec, value.example_inputs)
        r.output_names = tuple(value.output_names)
        return r
    if isinstance(value, tuple) and len(value) == 2:
        return _from_object(value[0], spec, value[1])
    return _from_object(value, spec, None)


def _from_path(path: Path, example_inputs) -> ResolvedSource:
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if not path.is_dir():
        require_file(path)  # a FIFO, device or empty file: one line, never a blocking open
    if path.is_dir() and any((path / f).is_file() for f in ("saved_model.pb", "saved_model.pbtxt")):
        return ResolvedSource(CONVERTERS["tensorflow"], path, str(path), example_inputs)
    if path.is_dir() and (path / "config.json").is_file() and "hf" in CONVERTERS:  # a Hugging Face checkpoint
        from forgeml.converters.hf_seq2seq import is_seq2seq_checkpoint

        name = "hf-seq2seq" if is_seq2seq_checkpoint(path) else "hf"
        return ResolvedSource(CONVERTERS[name], path, str(path), example_inputs)
    suffix = path.suffix.lower()
    kind = sniff(path) if path.is_file() else None
    if kind == "sklearn" and "torch" in CONVERTERS and suffix in CONVERTERS["torch"].suffixes:
        kind = "torch"  # a legacy torch.save file is a plain pickle; torch's loader scans it the same way
    if kind is not None and kind in CONVERTERS:
        return ResolvedSource(CONVERTERS[kind], path, str(path), example_inputs)
    for conv in CONVERTERS.values():
        if suffix in conv.suffixes:
            return ResolvedSource(conv, path, str(path), example_inputs)
    known = sorted({s for c in CONVERTERS.values() for s in c.suffixes})
    raise InputError(f"{path}: no converter reads {suffix or 'a directory'} files and its content is none forgeml "
                     f"recognises (ONNX, TorchScript/torch zip, HDF5/Keras, skops, pickle); forgeml reads "
                     f"{', '.join(known)}, zoo:NAME and python:module:function")


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def sniff(path: Path) -> str | None:
    """The converter kind a file's *content* says it is, whatever its name (``.jit``, ``.bin``, no
    suffix): packages ship models under names no suffix table knows. None when nothing matches.

    Nothing is loaded: zips are read by member names only, other files by their first bytes. A
    pickle goes to the scikit-learn pickle route, which scans it and loads it only with
    `options.trust_pickle`.
    """
    import zipfile

    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    if head.startswith(HDF5_SIGNATURE):
        return "tensorflow"  # Keras .h5
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return None
        base = {n.rsplit("/", 1)[-1] for n in names}
        if any("/code/" in n for n in names) or "constants.pkl" in base or "data.pkl" in base \
                or "archive_format" in base:
            return "torch"  # TorchScript, torch.save zip checkpoint, torch.export archive
        if "schema.json" in base:
            return "sklearn"  # skops
        if "config.json" in base and any(n.endswith(".weights.h5") for n in names):
            return "tensorflow"  # Keras 3 .keras
        return None
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "sklearn"  # a pickle: scanned before anything is loaded
    if head[:1] == b"\x08" and _looks_like_onnx(path):  # ModelProto starts with ir_version (field 1, varint)
        return "onnx"
    return None


def _looks_like_onnx(path: Path) -> bool:
    """An ONNX ModelProto parses and has a graph or opset imports. Only small headers are read by
    protobuf here; a large file is checked by parsing it all, which is what loading it does anyway."""
    try:
        import onnx
    except ImportError:
        return False
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception:
        return False
    return bool(proto.graph.node or proto.graph.input) and bool(proto.opset_import)
