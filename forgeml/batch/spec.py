"""The job file: YAML read into typed records, every mistake one line naming the file, the line and the key.

A batch file is written by hand and often long, so a typo must point at its line (``jobs.yaml:14:
models[2].quantize: unknown mode 'int3'``), not at a stack trace an hour into the run. Everything that
can be checked without the models is checked here: keys, types, quantize modes, target names, that
named files exist. Paths are relative to the job file's folder and stored absolute, because a worker on
another node does not share the driver's working directory (it must share the paths themselves).

    targets: [onnx, safetensors]        # default for every model (default: [onnx])
    quantize: [none, int8]              # none = float; default [none]
    resources: {num_cpus: 1, memory: 2GiB}
    target_resources: {tensorrt: {num_gpus: 1, custom: {tensorrt: 1}}}
    retries: 2                          # infrastructure failures only (worker or node lost, OOM kill)
    parity_batches: 3
    models:
      - zoo:mlp                         # a source alone: the defaults above
      - src: models/net.onnx            # any SRC kind forgeml convert takes
        name: net
        quantize: [int8-static]
        calibration: data/calib.npz
        inputs: [data/extra.npz]
        resources: {custom: {tensorrt: 1}}
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from forgeml.errors import InputError


class JobFileError(InputError):
    """A job file that cannot be run as written: the message starts with ``FILE:LINE:``."""


@dataclass(frozen=True)
class Resources:
    """What one job asks of the node that runs it, in Ray's terms. ``None`` leaves a field to the layer below
    (defaults < target_resources < the model's own) until ``filled()``."""

    num_cpus: float | None = None
    num_gpus: float | None = None
    memory: int | None = None  # bytes
    custom: tuple[tuple[str, float], ...] = ()

    def over(self, base: Resources) -> Resources:
        """These resources laid over ``base``: set fields win, custom resources merge by name."""
        custom = dict(base.custom)
        custom.update(self.custom)
        return Resources(num_cpus=base.num_cpus if self.num_cpus is None else self.num_cpus,
                         num_gpus=base.num_gpus if self.num_gpus is None else self.num_gpus,
                         memory=base.memory if self.memory is None else self.memory,
                         custom=tuple(sorted(custom.items())))

    def filled(self) -> Resources:
        """Every field set: one CPU, no GPU, no memory reservation unless asked."""
        return Resources(num_cpus=1.0 if self.num_cpus is None else self.num_cpus,
                         num_gpus=0.0 if self.num_gpus is None else self.num_gpus,
                         memory=self.memory, custom=self.custom)

    def demand(self) -> dict[str, float]:
        """Ray's resource names and amounts (CPU, GPU, memory, custom) this job needs on one node."""
        out = {"CPU": float(self.num_cpus or 0), "GPU": float(self.num_gpus or 0)}
        if self.memory:
            out["memory"] = float(self.memory)
        out.update(self.custom)
        return {k: v for k, v in out.items() if v}

    def to_json(self) -> dict:
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "memory": self.memory,
                "custom": dict(self.custom)}


@dataclass(frozen=True)
class ModelEntry:
    """One entry of ``models:``: a source and how to convert it (the same options ``forgeml convert`` has)."""

    name: str
    src: str  # zoo:NAME, python:module:function, or an absolute path
    line: int
    targets: tuple[str, ...]
    quantize: tuple[str | None, ...]  # None: float
    inputs: tuple[str, ...] = ()  # absolute .npz paths: extra parity inputs
    calibration: str | None = None
    synthetic_calibration: bool = False
    input_specs: tuple[str, ...] = ()  # name:DIMS:dtype
    dynamic_batch: bool = False
    opset: int | None = None
    trust_pickle: bool = False
    signature: str | None = None
    parity_batches: int = 3
    atol: float | None = None
    rtol: float | None = None
    resources: Resources = Resources()


@dataclass(frozen=True)
class BatchSpec:
    path: Path
    models: tuple[ModelEntry, ...]
    target_resources: dict[str, Resources] = field(default_factory=dict)
    resources: Resources = Resources()
    retries: int = 2


TOP_KEYS = ("models", "targets", "quantize", "resources", "target_resources", "retries", "parity_batches")
MODEL_KEYS = ("src", "name", "targets", "quantize", "inputs", "calibration", "synthetic_calibration", "input",
              "dynamic_batch", "opset", "trust_pickle", "signature", "parity_batches", "atol", "rtol", "resources")
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory", "custom")
FLOAT = "none"  # the quantize word for "no quantization"
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


# ---------------------------------------------------------------- YAML with line numbers

class _Map(dict):
    line = 0
    lines: dict


class _Seq(list):
    line = 0
    lines: list


def _loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader whose mappings and sequences remember the line of each value."""

    def mapping(loader, node):
        loader.flatten_mapping(node)
        out = _Map()
        out.line, out.lines = node.start_mark.line + 1, {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise JobFileError(f"{loader.name}:{key_node.start_mark.line + 1}: key {key!r} is not a name")
            if key in out:
                raise JobFileError(f"{loader.name}:{key_node.start_mark.line + 1}: key {key!r} appears twice "
                                   f"(first on line {out.lines[key]})")
            out[key] = loader.construct_object(value_node, deep=True)
            out.lines[key] = key_node.start_mark.line + 1
        return out

    def sequence(loader, node):
        out = _Seq(loader.construct_object(n, deep=True) for n in node.value)
        out.line, out.lines = node.start_mark.line + 1, [n.start_mark.line + 1 for n in node.value]
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, sequence)
    return Loader


def _read_yaml(path: Path):
    from forgeml.errors import missing_extra, require_file

    try:
        import yaml
    except ImportError as e:
        raise missing_extra("pyyaml", "batch") from e
    require_file(path, what="job file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise JobFileError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    Loader = _loader()
    loader = Loader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise JobFileError(f"{where}: not valid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise JobFileError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    finally:
        loader.dispose()


# ---------------------------------------------------------------- typed readers

class _Reader:
    """Reads one mapping of the file, each problem raised as ``FILE:LINE: KEY: problem``."""

    def __init__(self, path: Path, data, where: str, allowed: tuple[str, ...], line: int = 1):
        self.path, self.where = path, where
        if not isinstance(data, dict):
            self.fail(line, f"expected a mapping of keys ({', '.join(allowed)}), got {_kind(data)}", key=None)
        self.data, self.line = data, getattr(data, "line", line)
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(allowed)}"
                self.fail(self.line_of(key), f"unknown key{hint}", key=key)

    def line_of(self, key: str) -> int:
        return getattr(self.data, "lines", {}).get(key, self.line)

    def name(self, key: str | None) -> str:
        if key is None:
            return self.where or "the file"
        return f"{self.where}.{key}" if self.where else key

    def fail(self, line: int, problem: str, key: str | None = None):
        raise JobFileError(f"{self.path}:{line}: {self.name(key)}: {problem}")

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def get(self, key: str, kind: type | tuple, default=None):
        if not self.has(key):
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds).replace("str", "text").replace("bool", "true/false")
            self.fail(self.line_of(key), f"expected {names}, got {_kind(value)}", key)
        return value

    def words(self, key: str, default: tuple = ()) -> tuple[str, ...]:
        """A list of names, or one name."""
        if not self.has(key):
            return default
        value = self.data[key]
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) or v is None for v in items):
            self.fail(self.line_of(key), f"expected a name or a list of names, got {_kind(value)}", key)
        if not items:
            self.fail(self.line_of(key), "is empty", key)
        return tuple(FLOAT if v is None else v for v in items)

    def number(self, key: str, *, minimum: float = 0, integer: bool = False, default=None):
        value = self.get(key, int if integer else (int, float), default)
        if value is not None and value < minimum:
            self.fail(self.line_of(key), f"{value} is below {minimum}", key)
        return value

    def file(self, key: str, text: str, base: Path) -> str:
        p = Path(text).expanduser()
        p = p if p.is_absolute() else base / p
        if not p.exists():
            self.fail(self.line_of(key), f"{text}: no such file or directory (paths are relative to the "
                                         f"job file's folder, {base})", key)
        return str(p.resolve())


def _kind(value) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", _Map: "a mapping", list: "a list", _Seq: "a list", str: f"text {value!r}",
            bool: str(value).lower()}.get(type(value), f"{type(value).__name__} {value!r}")


def parse_memory(text) -> int:
    """Bytes from ``2GiB``, ``512MB``, ``1.5g`` or a plain number of bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"{text!r}: expected bytes or a size like 2GiB, 512MB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _resources(path: Path, data, where: str, line: int) -> Resources:
    r = _Reader(path, data, where, RESOURCE_KEYS, line)
    memory = None
    if r.has("memory"):
        try:
            memory = parse_memory(r.data["memory"])
        except ValueError as e:
            r.fail(r.line_of("memory"), str(e), "memory")
    custom = {}
    if r.has("custom"):
        c = _Reader(path, r.data["custom"], r.name("custom"), tuple(r.data["custom"] or ()), r.line_of("custom"))
        for name in c.data:
            custom[name] = float(c.number(name))
    return Resources(num_cpus=r.number("num_cpus"), num_gpus=r.number("num_gpus"), memory=memory,
                     custom=tuple(sorted(custom.items())))


def _check_words(r: _Reader, key: str, words: tuple[str, ...], known: tuple[str, ...], what: str) -> None:
    for w in words:
        if w not in known:
            close = difflib.get_close_matches(w, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"choose from {', '.join(known)}"
            r.fail(r.line_of(key), f"unknown {what} {w!r}; {hint}", key)


def _default_name(src: str) -> str:
    if src.startswith("zoo:"):
        return src[4:]
    if src.startswith("python:"):
        return src.rsplit(":", 1)[-1]
    p = Path(src.rstrip("/"))
    return p.name.split(".")[0] or p.name


def _model(path: Path, data, index: int, line: int, defaults: dict, known_targets, known_modes) -> ModelEntry:
    if isinstance(data, str):  # "- zoo:mlp": a source with the defaults
        data = _Map(src=data)
        data.line, data.lines = line, {"src": line}
    r = _Reader(path, data, f"models[{index}]", MODEL_KEYS, line)
    base = path.parent
    if not r.has("src"):
        r.fail(r.line, "needs src: a model file, zoo:NAME or python:module:function", "src")
    src = r.get("src", str).strip()
    if not (src.startswith("zoo:") or src.startswith("python:")):
        src = r.file("src", src, base)
    elif src.startswith("python:") and src.count(":") == 2 and src.split(":")[1].endswith(".py"):
        _, module, function = src.split(":")  # python:file.py:function, the file relative to the job file
        src = f"python:{r.file('src', module, base)}:{function}"
    targets = r.words("targets", defaults["targets"])
    quantize = r.words("quantize", defaults["quantize"])
    _check_words(r, "targets", targets, known_targets, "target")
    _check_words(r, "quantize", quantize, (FLOAT, *known_modes), "quantize mode")
    inputs = r.get("inputs", (list, str), [])
    inputs = [inputs] if isinstance(inputs, str) else inputs
    if not all(isinstance(i, str) for i in inputs):
        r.fail(r.line_of("inputs"), "expected a list of .npz paths", "inputs")
    calibration = r.get("calibration", str)
    synthetic = r.get("synthetic_calibration", bool, False)
    if "int8-static" in quantize and not (calibration or synthetic):
        r.fail(r.line_of("quantize"), "int8-static needs calibration: an .npz path, or synthetic_calibration: true",
               "quantize")
    if calibration and synthetic:
        r.fail(r.line_of("synthetic_calibration"), "give calibration or synthetic_calibration, not both",
               "synthetic_calibration")
    specs = r.get("input", (list, str), [])
    specs = [specs] if isinstance(specs, str) else specs
    from forgeml.parity.inputs import parse_input_spec

    for s in specs:
        try:
            parse_input_spec(str(s))
        except InputError as e:
            r.fail(r.line_of("input"), str(e).replace("`options.input_specs` ", ""), "input")
    res = _resources(path, r.data["resources"], r.name("resources"), r.line_of("resources")) \
        if r.has("resources") else Resources()
    name = r.get("name", str) or _default_name(src)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        r.fail(r.line_of("name") if r.has("name") else r.line, f"{name!r} is not usable in a file name (letters, "
               "digits, '.', '_', '-')", "name")
    return ModelEntry(
        name=name, src=src, line=r.line, targets=tuple(dict.fromkeys(targets)),
        quantize=tuple(None if q == FLOAT else q for q in dict.fromkeys(quantize)),
        inputs=tuple(r.file("inputs", i, base) for i in inputs),
        calibration=r.file("calibration", calibration, base) if calibration else None,
        synthetic_calibration=synthetic, input_specs=tuple(str(s) for s in specs),
        dynamic_batch=r.get("dynamic_batch", bool, False), opset=r.number("opset", integer=True, minimum=1),
        trust_pickle=r.get("trust_pickle", bool, False), signature=r.get("signature", str),
        parity_batches=r.number("parity_batches", integer=True, default=defaults["parity_batches"]),
        atol=r.number("atol"), rtol=r.number("rtol"), resources=res)


def load(path: str | Path) -> BatchSpec:
    """Read and check a job file; raises ``JobFileError`` (``FILE:LINE: key: problem``) on the first mistake."""
    from forgeml.passes.modes import MODES
    from forgeml.targets import TARGETS

    path = Path(path).resolve() if Path(path).exists() else Path(path)
    data = _read_yaml(path)
    if data is None:
        raise JobFileError(f"{path}:1: the file is empty; it needs at least models: [{{src: zoo:mlp}}]")
    r = _Reader(path, data, "", TOP_KEYS)
    known_targets = tuple(TARGETS)
    defaults = {"targets": r.words("targets", ("onnx",)), "quantize": r.words("quantize", (FLOAT,)),
                "parity_batches": r.number("parity_batches", integer=True, default=3)}
    _check_words(r, "targets", defaults["targets"], known_targets, "target")
    _check_words(r, "quantize", defaults["quantize"], (FLOAT, *MODES), "quantize mode")
    if not r.has("models"):
        r.fail(1, "missing: list the models to convert, e.g. models: [{src: zoo:mlp}]", "models")
    models = r.data["models"]
    if not isinstance(models, list) or not models:
        r.fail(r.line_of("models"), f"expected a non-empty list of models, got {_kind(models)}", "models")
    lines = getattr(models, "lines", [r.line_of("models")] * len(models))
    entries = tuple(_model(path, m, i, lines[i], defaults, known_targets, MODES) for i, m in enumerate(models))
    seen: dict[str, int] = {}
    for e in entries:
        if e.name in seen:
            raise JobFileError(f"{path}:{e.line}: models: two models are named {e.name!r} (the other on line "
                               f"{seen[e.name]}); give one a different name:")
        seen[e.name] = e.line
    target_resources = {}
    if r.has("target_resources"):
        t = _Reader(path, r.data["target_resources"], "target_resources", known_targets,
                    r.line_of("target_resources"))
        target_resources = {name: _resources(path, t.data[name], t.name(name), t.line_of(name)) for name in t.data}
    return BatchSpec(
        path=path, models=entries, target_resources=target_resources,
        resources=_resources(path, r.data["resources"], "resources", r.line_of("resources"))
        if r.has("resources") else Resources(),
        retries=r.number("retries", integer=True, default=2))
