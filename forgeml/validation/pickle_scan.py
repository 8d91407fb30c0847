"""The pickle scanner: what a pickle would import, read from its opcodes without executing any of it.

A pickle is a program for a small stack machine; the only way it reaches code is by importing a
global (``GLOBAL``/``INST`` name it in the opcode argument, ``STACK_GLOBAL`` takes two strings from
the stack, ``EXT1/2/4`` use the copyreg extension registry) and then calling it. So the scanner
simulates the stack (strings, numbers, tuples, dicts and the memo, enough to resolve
``STACK_GLOBAL`` and to read joblib's array headers), lists every global with its byte offset, and
classifies each against an allow-list of globals known to be safe to import and call (numpy arrays
and dtypes, scikit-learn classes, torch tensor rebuilding and storages, ``collections.OrderedDict`` …).
A global outside the allow-list is *dangerous* when it is known to run code (``os.system``,
``builtins.eval``, ``subprocess``, ``runpy`` …) and *unknown* otherwise (a user's own class).

Containers: torch zip archives (every ``*.pkl`` member), legacy ``torch.save`` files (the chain of
pickles), joblib files (raw array bytes between opcodes are skipped by reading the array's shape and
dtype from its ``NumpyArrayWrapper`` state; zlib/gzip/bz2/xz compression), ``.npy`` with object arrays,
and ``.npz``. Why our own code: picklescan 1.0.5 and fickling 0.1.12 both stop at joblib's raw array
bytes (picklescan then reports a joblib file with ``os.system`` after an array as clean; fickling
cannot parse any joblib file with arrays), and picklescan classifies by a deny-list, not an allow-list.
"""

from __future__ import annotations

import ast
import io
import logging
import pickletools
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from forgeml.errors import InputError

log = logging.getLogger(__name__)

SAFE, UNKNOWN, DANGEROUS = "safe", "unknown", "dangerous"

# --- the allow-list -------------------------------------------------------------------------------

_SAFE_EXACT = {
    ("collections", "OrderedDict"), ("collections", "defaultdict"), ("collections", "Counter"),
    ("_collections", "OrderedDict"), ("_codecs", "encode"), ("copyreg", "_reconstructor"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "range"),
    ("builtins", "complex"), ("builtins", "bytearray"), ("builtins", "bytes"), ("builtins", "object"),
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "int"),
    ("builtins", "float"), ("builtins", "str"), ("builtins", "bool"), ("__builtin__", "set"),
    ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"), ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random.mtrand", "RandomState"), ("numpy.random._mt19937", "MT19937"),
    ("numpy.random._pcg64", "PCG64"), ("numpy.ma.core", "_mareconstruct"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper"), ("joblib.numpy_pickle_compat", "NDArrayWrapper"),
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"), ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"), ("torch._utils", "_rebuild_qtensor"),
    ("torch._utils", "_rebuild_sparse_tensor"), ("torch._utils", "_rebuild_meta_tensor_no_storage"),
    ("torch._tensor", "_rebuild_from_type_v2"), ("torch", "Size"), ("torch", "device"),
    ("torch", "Tensor"), ("torch.nn.parameter", "Parameter"), ("torch.storage", "UntypedStorage"),
    ("torch.storage", "TypedStorage"), ("torch.serialization", "_get_layout"), ("torch", "strided"),
    ("torch", "sparse_coo"), ("torch", "per_tensor_affine"), ("torch", "per_channel_affine"),
}
_TORCH_DTYPES = {"float32", "float64", "float16", "bfloat16", "int8", "int16", "int32", "int64", "uint8",
                 "bool", "complex64", "complex128", "float", "double", "half", "long", "int", "short"}
# Packages whose *classes* (CapWords names) are safe to construct while unpickling.
_SAFE_CLASS_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.", "torch.nn.modules.", "pandas.core.")

# --- known code execution (the "dangerous" label; anything else outside the allow-list is "unknown") --

_DANGEROUS_MODULES = ("os", "posix", "nt", "subprocess", "sys", "runpy", "importlib", "socket", "shutil",
                      "pty", "webbrowser", "pickle", "_pickle", "marshal", "code", "codeop", "ctypes",
                      "multiprocessing", "asyncio", "urllib", "requests", "http", "ftplib", "telnetlib",
                      "types", "operator", "functools", "pip", "setuptools", "commands", "popen2",
                      "platform", "signal", "tempfile", "glob", "pathlib", "io", "_io", "posixpath",
                      "threading", "_thread", "dill", "cloudpickle", "joblib.externals")
_DANGEROUS_BUILTINS = {"eval", "exec", "compile", "open", "__import__", "getattr", "setattr", "delattr",
                       "globals", "locals", "vars", "input", "breakpoint", "apply", "execfile", "file",
                       "reload", "memoryview", "help", "exit", "quit", "print"}
_DANGEROUS_EXACT = {("torch.storage", "_load_from_bytes"), ("torch.serialization", "load"),
                    ("torch", "load"), ("numpy", "load"), ("numpy.lib.npyio", "load"),
                    ("joblib", "load"), ("torch.hub", "load"), ("torch.jit", "load")}


def classify(module: str, name: str) -> str:
    if (module, name) in _SAFE_EXACT:
        return SAFE
    if module == "torch" and name in _TORCH_DTYPES:
        return SAFE
    if module == "torch" and name.endswith("Storage") and name[:1].isupper():
        return SAFE
    if module in ("builtins", "__builtin__") and name in _DANGEROUS_BUILTINS:
        return DANGEROUS
    if (module, name) in _DANGEROUS_EXACT:
        return DANGEROUS
    root = module.split(".")[0]
    if any(module == m or module.startswith(m + ".") for m in _DANGEROUS_MODULES) or root in _DANGEROUS_MODULES:
        return DANGEROUS
    if module.startswith(_SAFE_CLASS_PREFIXES) and name[:1].isupper() and "." not in name:
        return SAFE
    return UNKNOWN


# --- results --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GlobalRef:
    module: str
    name: str
    opcode: str
    offset: int  # byte offset of the opcode in its pickle stream
    member: str = ""  # archive member holding the pickle ("" for a plain file)
    verdict: str = UNKNOWN

    def describe(self) -> str:
        where = f"{self.member}@{self.offset}" if self.member else f"offset {self.offset}"
        return f"{self.module}.{self.name} ({self.opcode} at {where}): {self.verdict}"

    def to_json(self) -> dict:
        return {"global": f"{self.module}.{self.name}", "opcode": self.opcode, "offset": self.offset,
                "member": self.member, "verdict": self.verdict}


@dataclass
class ScanReport:
    path: Path
    format: str  # "pickle", "torch-zip", "torch-legacy", "joblib", "npy", "npz"
    globals: list[GlobalRef] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # content that could not be followed
    pickles: int = 0

    @property
    def flagged(self) -> list[GlobalRef]:
        return [g for g in self.globals if g.verdict != SAFE]

    @property
    def dangerous(self) -> list[GlobalRef]:
        return [g for g in self.globals if g.verdict == DANGEROUS]

    @property
    def clean(self) -> bool:
        return not self.flagged and not self.problems

    def to_json(self) -> dict:
        return {"path": str(self.path), "format": self.format, "pickles": self.pickles, "clean": self.clean,
                "globals": [g.to_json() for g in self.globals], "problems": list(self.problems)}


# --- the opcode walker ---------------------------------------------------------------------------------

_MARK = object()
_UNKNOWN = object()


class _Obj:
    """An object the pickle would build: its callable (a GlobalRef or unknown), args, and BUILD state."""

    __slots__ = ("func", "args", "state")

    def __init__(self, func, args):
        self.func, self.args, self.state = func, args, None


_LITERAL_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
               "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "INT", "BININT", "BININT1",
               "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"}


def _scan_stream(stream: io.BufferedIOBase, member: str, report: ScanReport, joblib_arrays: bool) -> None:
    """Walk one pickle (to its STOP) from the stream's position; raw joblib array data is skipped."""
    stack: list = []
    memo: dict = {}

    def pop(n: int = 1):
        if len(stack) < n:
            raise ValueError("stack underflow")
        out = stack[len(stack) - n:]
        del stack[len(stack) - n:]
        return out

    def pop_mark():
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                items = stack[i + 1:]
                del stack[i:]
                return items
        raise ValueError("no MARK on the stack")

    def add_global(module, name, op, pos) -> GlobalRef:
        if not isinstance(module, str) or not isinstance(name, str):
            ref = GlobalRef("<unresolved>", "<unresolved>", op, pos, member, DANGEROUS)
        else:
            ref = GlobalRef(module, name, op, pos, member, classify(module, name))
        report.globals.append(ref)
        return ref

    for op, arg, pos in pickletools.genops(stream):
        name = op.name
        if name in _LITERAL_OPS:
            stack.append(arg)
        elif name in ("NONE",):
            stack.append(None)
        elif name in ("NEWTRUE", "NEWFALSE"):
            stack.append(name == "NEWTRUE")
        elif name == "MARK":
            stack.append(_MARK)
        elif name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            ref = add_global(module, attr, name, pos)
            if name == "INST":
                stack.append(_Obj(ref, tuple(pop_mark())))
            else:
                stack.append(ref)
        elif name == "STACK_GLOBAL":
            module, attr = pop(2)
            stack.append(add_global(module, attr, name, pos))
        elif name in ("EXT1", "EXT2", "EXT4"):
            report.globals.append(GlobalRef("copyreg.extension", str(arg), name, pos, member, DANGEROUS))
            stack.append(_UNKNOWN)
        elif name in ("MEMOIZE",):
            memo[len(memo)] = stack[-1] if stack else _UNKNOWN
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1] if stack else _UNKNOWN
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(arg, _UNKNOWN))
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            stack.append(tuple(pop(int(name[-1]))))
        elif name == "TUPLE":
            stack.append(tuple(pop_mark()))
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "DICT":
            items = pop_mark()
            stack.append(_to_dict(items))
        elif name == "SETITEM":
            k, v = pop(2)
            _set_items(stack[-1] if stack else None, [k, v])
        elif name == "SETITEMS":
            items = pop_mark()
            _set_items(stack[-1] if stack else None, items)
        elif name in ("REDUCE", "NEWOBJ"):
            func, args = pop(2)
            stack.append(_Obj(func, args))
        elif name == "NEWOBJ_EX":
            func, args, _kwargs = pop(3)
            stack.append(_Obj(func, args))
        elif name == "OBJ":
            items = pop_mark()
            stack.append(_Obj(items[0] if items else _UNKNOWN, tuple(items[1:])))
        elif name == "BUILD":
            (state,) = pop(1)
            target = stack[-1] if stack else None
            if isinstance(target, _Obj):
                target.state = state
                # By class name, whatever module path names it: joblib reads raw bytes after any
                # NumpyArrayWrapper, so a scanner that did not would lose step with it.
                if joblib_arrays and isinstance(target.func, GlobalRef) and target.func.name == "NumpyArrayWrapper":
                    _skip_joblib_array(stream, target, member, report)
        elif name == "STOP":
            break
        else:
            _generic(op, stack, pop, pop_mark)


def _generic(op, stack, pop, pop_mark) -> None:
    """Apply an opcode's documented stack effect, pushing unknown values."""
    before = list(op.stack_before)
    if pickletools.markobject in before:
        i = before.index(pickletools.markobject)
        pop_mark()
        if i:
            pop(i)
    elif before:
        pop(len(before))
    for item in op.stack_after:
        stack.append(_MARK if item is pickletools.markobject else _UNKNOWN)


def _to_dict(items: list) -> dict:
    out = {}
    _set_items(out, items)
    return out


def _set_items(target, items: list) -> None:
    if not isinstance(target, dict):
        return
    for k, v in zip(items[::2], items[1::2]):
        try:
            target[k] = v
        except TypeError:  # an unhashable placeholder as key
            pass


def _skip_joblib_array(stream, wrapper: _Obj, member: str, report: ScanReport) -> None:
    """joblib writes an array's bytes right after its wrapper's BUILD: skip them (or scan the nested
    pickle of an object array), reading the size from the wrapper's state, never from the data."""
    import numpy as np

    state = wrapper.state if isinstance(wrapper.state, dict) else {}
    shape, dtype = state.get("shape"), state.get("dtype")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape) \
            or not isinstance(dtype, _Obj) or not isinstance(dtype.args, tuple) or not dtype.args \
            or not isinstance(dtype.args[0], str):
        raise ValueError("a joblib array whose shape or dtype is not literal data")
    descr = dtype.args[0]
    dstate = dtype.state if isinstance(dtype.state, tuple) else ()
    flags = dstate[7] if len(dstate) > 7 and isinstance(dstate[7], int) else 0
    if descr.startswith("O") or flags & 1:
        _scan_stream(stream, member, report, joblib_arrays=True)  # object arrays are a nested pickle
        report.pickles += 1
        return
    itemsize = dstate[5] if len(dstate) > 5 and isinstance(dstate[5], int) and dstate[5] > 0 \
        else np.dtype(descr).itemsize
    if "numpy_array_alignment_bytes" in state:
        pad = stream.read(1)
        if len(pad) != 1:
            raise ValueError("truncated joblib array padding")
        stream.seek(pad[0], io.SEEK_CUR)
    stream.seek(int(np.prod(shape, dtype=np.int64)) * int(itemsize), io.SEEK_CUR)


# --- containers ------------------------------------------------------------------------------------

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


def _scan_pickles(data: bytes, member: str, report: ScanReport, *, max_pickles: int = 1) -> None:
    stream = io.BytesIO(data)
    for i in range(max_pickles):
        if stream.tell() >= len(data):
            break
        start = stream.tell()
        try:
            _scan_stream(stream, member, report, joblib_arrays=True)
        except Exception as e:  # genops raises ValueError and others on bytes that are not opcodes
            where = f"{member}@{start}" if member else f"offset {start}"
            report.problems.append(f"pickle {i + 1} at {where} cannot be read as opcodes: {e}")
            return
        report.pickles += 1


def _decompress(data: bytes) -> tuple[bytes, str]:
    import bz2
    import gzip
    import lzma
    import zlib

    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data), "gzip"
    if data[:3] == b"BZh":
        return bz2.decompress(data), "bz2"
    if data[:6] == b"\xfd7zXZ\x00" or data[:3] == b"\x5d\x00\x00":
        return lzma.decompress(data), "lzma"
    if data[:1] == b"\x78" and len(data) > 1 and (data[0] * 256 + data[1]) % 31 == 0:
        return zlib.decompress(data), "zlib"
    if data[:4] == b"\x04\x22\x4d\x18":
        raise InputError("lz4-compressed joblib files are not scanned; re-save without lz4 compression")
    return data, ""


def _scan_npy(data: bytes, member: str, report: ScanReport) -> None:
    if not data.startswith(b"\x93NUMPY"):
        report.problems.append(f"{member or 'file'}: not a .npy array")
        return
    major = data[6]
    hlen_size = 2 if major == 1 else 4
    hlen = int.from_bytes(data[8:8 + hlen_size], "little")
    start = 8 + hlen_size
    try:
        header = ast.literal_eval(data[start:start + hlen].decode("latin1"))
    except (ValueError, SyntaxError) as e:
        report.problems.append(f"{member or 'file'}: unreadable .npy header ({e})")
        return
    if "O" in str(header.get("descr", "")):
        _scan_pickles(data[start + hlen:], member, report)


def scan_bytes(data: bytes, name: str = "") -> ScanReport:
    """Scan a file's content; ``name`` (its file name) picks the container by suffix where needed."""
    suffix = Path(name).suffix.lower()
    report = ScanReport(Path(name), "pickle")
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = z.namelist()
            if suffix == ".npz" or (names and all(n.endswith(".npy") for n in names)):
                report.format = "npz"
                for n in names:
                    _scan_npy(z.read(n), n, report)
                return report
            report.format = "torch-zip"
            pkls = [n for n in names if n.endswith(".pkl")]
            if not pkls:
                report.problems.append("a zip archive with no pickle inside: not a torch checkpoint")
            for n in pkls:
                _scan_pickles(z.read(n), n, report)
        return report
    if data.startswith(b"\x93NUMPY"):
        report.format = "npy"
        _scan_npy(data, "", report)
        return report
    raw, codec = _decompress(data)
    if codec:
        report.format = f"joblib ({codec})"
    elif suffix == ".joblib":
        report.format = "joblib"
    if not raw[:1] == b"\x80" and not codec and suffix not in (".pkl", ".pickle", ".joblib"):
        report.problems.append("not a pickle (no protocol header)")
        return report
    if not raw:
        report.problems.append("empty: no pickle in it")
        return report
    _scan_pickles(raw, "", report, max_pickles=1)
    if report.pickles and not report.problems and _is_torch_legacy(raw):
        report.format = "torch-legacy"
        report.globals.clear()
        report.pickles = 0
        _scan_pickles(raw, "", report, max_pickles=5)  # magic, protocol, sys info, the object, storage keys
    return report


def _is_torch_legacy(raw: bytes) -> bool:
    import pickle

    try:
        # The first pickle was scanned: an int needs no global, so loading it cannot run code.
        first = pickle.loads(raw[:32]) if raw[:2] == b"\x80\x02" and raw[2:3] == b"\x8a" else None
    except Exception:
        return False
    return first == _TORCH_MAGIC


def scan_file(path: str | Path) -> ScanReport:
    """Read ``path`` and scan it; an unreadable file is an InputError."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: not a file" if p.exists() else f"{p}: no such file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"{p}: cannot read it ({e.strerror})") from e
    try:
        report = scan_bytes(data, p.name)
    except zipfile.BadZipFile as e:
        raise InputError(f"{p}: a broken zip archive ({e})") from e
    except (OSError, EOFError, ValueError) as e:  # decompression errors
        raise InputError(f"{p}: cannot decompress it ({e})") from e
    report.path = p
    return report


# --- the gate before any pickle-based load ----------------------------------------------------------

def refuse_unsafe(path: str | Path, trust_pickle: bool) -> ScanReport:
    """Scan before loading. Dangerous globals or unreadable content: always refused. Globals outside
    the allow-list that are not known to run code (a user's own classes): refused unless trusted."""
    report = scan_file(path)
    bad = report.dangerous if trust_pickle else report.flagged
    if bad or report.problems:
        listed = "; ".join(g.describe() for g in bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")
        what = listed or "; ".join(report.problems[:2])
        hint = "" if report.dangerous or report.problems or trust_pickle else \
            "; pass --trust-pickle only if you trust its author"
        raise InputError(f"{report.path}: refused to load this pickle: {what}{hint}")
    if report.flagged:
        log.warning("%s: loading with --trust-pickle despite globals outside the allow-list: %s", report.path,
                    ", ".join(f"{g.module}.{g.name}" for g in report.flagged))
    return report


def require_safe_pickle(path: str | Path, trust_pickle: bool) -> ScanReport:
    """The gate for a full unpickle: nothing flagged (see ``refuse_unsafe``), and --trust-pickle given."""
    report = refuse_unsafe(path, trust_pickle)
    if not trust_pickle:
        raise InputError(f"{report.path}: a pickle-based file; the scan found only allow-listed globals, but "
                         f"unpickling still runs code: pass --trust-pickle if you trust its author, or save the "
                         f"model in a safe format (.skops, .keras, .onnx, .pt2)")
    return report
