"""The pickle scanner: what a pickle would import, read from its opcodes without executing any of it.

A pickle is a program for a small stack machine; the only way it reaches code is by importing a
global (``GLOBAL``/``INST`` name it in the opcode argument, ``STACK_GLOBAL`` takes two strings from
the stack, ``EXT1/2/4`` use the copyreg extension registry) and then calling it. So the scanner
decodes the opcodes itself (never ``pickle.load``), simulates the stack (strings, numbers, tuples,
dicts and the memo, enough to resolve ``STACK_GLOBAL`` and to read joblib's array headers), lists
every global with its byte offset, and classifies each against an allow-list of globals known to be
safe to import and call (numpy arrays and dtypes, scikit-learn classes, torch tensor rebuilding and
storages, ``collections.OrderedDict`` …). Outside the allow-list a global is *dangerous* when it can
reach code: a name in a code-running module (``os``, ``subprocess``, ``runpy`` …), any other standard
library global (``pydoc.locate``, ``timeit.timeit``, ``cProfile.run`` …), a code-reaching corner of an
allow-listed package (``numpy.testing``, ``torch.hub``, ``torch.utils.cpp_extension`` …), a resolver
that imports by name (``numpy._core._ufunc_reconstruct``), or an attribute chain (protocol 4 resolves
``numpy`` + ``ctypeslib.os.system`` attribute by attribute). Anything else is *unknown* (a user's own
class), which ``options.trust_pickle`` admits; nothing dangerous is ever admitted.

Every pickle in a stream is scanned, not only the first: a payload appended after a benign pickle is
found. Containers: torch zip archives (every member that is or holds a pickle, whatever its name;
the raw storages under ``data/`` are skipped), legacy ``torch.save`` files (five pickles, then raw
storages whose sizes are checked against the file), joblib files (raw array bytes between opcodes are
skipped by reading the array's shape and dtype from its ``NumpyArrayWrapper`` state; zlib/gzip/bz2/xz
compression), ``.npy`` with object arrays, ``.npz``, and containers nested inside zip members.

Hostile files cannot exhaust memory or time: the file is streamed, never read whole; every length
read from the file is checked against what is left before anything is allocated; large literals are
skipped, not kept; decompression stops at ``ScanLimits.inflated_bytes`` (a stated bound); opcode,
stack and pickle counts are bounded. Why our own code: picklescan 1.0.5 and fickling 0.1.12 both stop
at joblib's raw array bytes, and picklescan classifies by a deny-list, not an allow-list.
"""

from __future__ import annotations

import io
import logging
import pickletools
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from forgeml.errors import InputError, require_file

log = logging.getLogger(__name__)

SAFE, UNKNOWN, DANGEROUS = "safe", "unknown", "dangerous"

# --- the allow-list -------------------------------------------------------------------------------

_SAFE_EXACT = {
    ("collections", "OrderedDict"), ("collections", "defaultdict"), ("collections", "Counter"),
    ("collections", "deque"), ("_collections", "OrderedDict"), ("_collections", "deque"),
    ("_codecs", "encode"), ("copyreg", "_reconstructor"), ("copyreg", "__newobj__"),
    ("copyreg", "__newobj_ex__"), ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"),
    ("datetime", "timedelta"), ("datetime", "timezone"), ("decimal", "Decimal"), ("fractions", "Fraction"),
    ("uuid", "UUID"), ("array", "array"), ("array", "_array_reconstructor"),
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
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"), ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"), ("torch._utils", "_rebuild_qtensor"),
    ("torch._utils", "_rebuild_sparse_tensor"), ("torch._utils", "_rebuild_meta_tensor_no_storage"),
    ("torch._tensor", "_rebuild_from_type_v2"), ("torch", "Size"), ("torch", "device"),
    ("torch", "Tensor"), ("torch.nn.parameter", "Parameter"), ("torch.storage", "UntypedStorage"),
    ("torch.storage", "TypedStorage"), ("torch.serialization", "_get_layout"), ("torch", "strided"),
    ("torch", "sparse_coo"), ("torch", "per_tensor_affine"), ("torch", "per_channel_affine"),
}
# TorchScript's data.pkl list and tensor builders (torch.jit.load's C++ unpickler handles them itself)
_SAFE_EXACT |= {("torch.jit._pickle", n) for n in ("build_intlist", "build_tensorlist", "build_doublelist",
                                                   "build_boollist", "build_tensor_from_id", "restore_type_tag")}
_TORCH_DTYPES = {"float32", "float64", "float16", "bfloat16", "int8", "int16", "int32", "int64", "uint8",
                 "bool", "complex64", "complex128", "float", "double", "half", "long", "int", "short"}
# Packages whose *classes* (CapWords names) are safe to construct while unpickling.
_SAFE_CLASS_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.", "torch.nn.modules.", "pandas.core.")
# Module roots the allow-list trusts in part: outside the allow-list, their corners that reach code
# are dangerous (below), the rest unknown.
_ALLOWLISTED_ROOTS = {"numpy", "torch", "sklearn", "scipy", "pandas", "joblib"}

# --- known code execution (the "dangerous" label; anything else outside the allow-list is "unknown") --

# Every standard-library module is dangerous outside the allow-list above (a user's class never lives
# there, and the library is full of code-runners: pydoc.locate, timeit.timeit, cProfile.run, pdb.run …).
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | {"__builtin__", "posix", "nt", "commands",
                                                               "popen2"}
_DANGEROUS_MODULES = (
    # third-party code-runners and serializers
    "pip", "setuptools", "dill", "cloudpickle", "requests", "yaml", "IPython", "jinja2",
    # corners of allow-listed packages that load files, compile, import by name or run code
    "numpy.testing", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib", "numpy.lib.format",
    "numpy.lib.npyio", "numpy.lib._npyio_impl", "numpy.lib.utils", "numpy.lib._utils_impl",
    "numpy._pytesttester", "numpy._utils",
    "torch.hub", "torch.jit", "torch.package", "torch.utils.cpp_extension", "torch.utils.data",
    "torch.utils.benchmark", "torch.utils._import_utils", "torch._ops", "torch.ops", "torch.classes",
    "torch.library", "torch.fx", "torch._dynamo", "torch._inductor", "torch.compiler", "torch.export",
    "torch._export", "torch.distributed", "torch.multiprocessing", "torch.serialization", "torch._C",
    "torch.testing", "torch.onnx", "torch.cuda", "torch.backends", "torch._weights_only_unpickler",
    "joblib.externals", "joblib.parallel", "joblib._parallel_backends", "joblib.memory", "joblib.hashing",
    "joblib.numpy_pickle_utils", "joblib.pool", "joblib.executor",
    "pandas.io", "pandas.core.computation", "pandas.eval", "pandas.read_pickle",
    "sklearn.utils._testing", "sklearn.externals", "sklearn.utils._show_versions", "scipy._lib._testutils",
    "scipy.weave",
)
_DANGEROUS_EXACT = {("joblib.numpy_pickle_compat", "NDArrayWrapper"),  # reads side .npy files with pickle
                    ("torch.storage", "_load_from_bytes"), ("torch", "load"), ("torch", "from_file"),
                    ("torch", "compile"), ("numpy", "load"), ("numpy", "fromfile"), ("numpy", "loadtxt"),
                    ("numpy", "genfromtxt"), ("numpy", "fromregex"), ("numpy", "memmap"),
                    ("numpy._core", "_ufunc_reconstruct"), ("numpy.core", "_ufunc_reconstruct"),
                    ("torch._utils", "_import_dotted_name"), ("joblib", "load"), ("pandas", "read_pickle"),
                    ("pandas", "eval")}
# Module names that legitimately start with a dunder: TorchScript's class namespace, a script's classes.
_DUNDER_ROOTS = {"__torch__", "__main__", "__builtin__", "__mp_main__"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _dunder(part: str) -> bool:
    return len(part) > 4 and part.startswith("__") and part.endswith("__")


def _in(module: str, prefixes) -> bool:
    return any(module == m or module.startswith(m + ".") for m in prefixes)


_TENSOR_MATH = ("torch.nn.functional", "torch._C._nn", "torch._C._VariableFunctions", "torch._C._special",
                "torch._C._linalg", "torch._C._fft", "torch.special", "torch.linalg", "torch.fft")
_CYTHON_CTOR = re.compile(r"__pyx_unpickle_[A-Z][A-Za-z0-9_]*\Z")
_SPARSE_CLASSES = re.compile(r"(bsr|coo|csc|csr|dia|dok|lil)_(matrix|array)\Z")


def _py3_name(module: str, name: str) -> tuple[str, str]:
    """The name Python 3's unpickler really imports for a protocol 0–2 pickle written by Python 2
    (``fix_imports``: ``cPickle`` → ``_pickle``, ``__builtin__`` → ``builtins``, ``commands`` → …)."""
    import _compat_pickle

    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _numpy_ufunc(module: str, name: str) -> bool:
    """A numpy ufunc by its public name (``numpy.log1p``): what a FunctionTransformer holds. Decided by
    looking the name up in the installed numpy, never by importing what the pickle names."""
    if module != "numpy" or not _IDENT.match(name):
        return False
    import numpy as np

    return isinstance(getattr(np, name, None), np.ufunc)


def classify(module: str, name: str) -> str:
    """``safe``, ``unknown`` or ``dangerous`` for the global ``module.name`` a pickle imports."""
    if (module, name) in _SAFE_EXACT:
        return SAFE
    compat = _py3_name(module, name)
    if compat != (module, name):
        verdict = classify(*compat)
        return DANGEROUS if verdict == DANGEROUS else verdict
    mod_parts, name_parts = module.split("."), name.split(".")
    if not all(_IDENT.match(p) for p in mod_parts + name_parts):
        return DANGEROUS  # not a Python name: nothing legitimate is spelled so
    if any(_dunder(p) for p in mod_parts[1:]) or (_dunder(mod_parts[0]) and mod_parts[0] not in _DUNDER_ROOTS):
        return DANGEROUS  # os.__dict__ …
    if any(_dunder(p) for p in name_parts):
        return DANGEROUS  # __import__, X.__init__.__globals__ …
    if len(name_parts) > 1 and not all(p[:1].isupper() for p in name_parts):
        return DANGEROUS  # an attribute chain (ctypeslib.os.system); only Outer.Inner classes pass on
    root = mod_parts[0]
    if module == "torch" and name in _TORCH_DTYPES:
        return SAFE
    if module == "torch" and name.endswith("Storage") and name[:1].isupper():
        return SAFE
    if _in(module, _TENSOR_MATH):
        return UNKNOWN  # tensor math a whole pickled module may hold (self.act = F.gelu): trusted files only
    if (module, name) in _DANGEROUS_EXACT or _in(module, _DANGEROUS_MODULES) or _in(f"{module}.{name}",
                                                                                      _DANGEROUS_MODULES):
        return DANGEROUS
    if root in _STDLIB:
        return DANGEROUS
    if module.startswith(_SAFE_CLASS_PREFIXES) and name.lstrip("_")[:1].isupper() and "." not in name:
        return SAFE  # a class, private ones too (sklearn's _BinMapper)
    if module.startswith("scipy.sparse.") and _SPARSE_CLASSES.match(name) or _numpy_ufunc(module, name):
        return SAFE
    if module == "torch._utils" and name.startswith("_rebuild_") or _CYTHON_CTOR.match(name) and root != "torch":
        return SAFE  # tensor rebuilders; Cython's generated constructors of the class they name
    if root in _ALLOWLISTED_ROOTS:
        # Inside numpy/torch/scipy/sklearn/pandas/joblib, a global off the allow-list is library code the
        # file's author did not write: helpers there resolve names, load side files or spawn processes
        # (scipy's unpickle_function, torch.utils.collect_env.run, joblib.numpy_pickle.load …).
        return DANGEROUS
    return UNKNOWN


# --- limits --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScanLimits:
    """Bounds that keep a hostile file from exhausting memory or time; exceeding one is a problem
    (the file is refused), never a crash."""

    inflated_floor: int = 256 << 20  # decompression may always reach this many bytes …
    inflation_ratio: int = 200  # … or this many times the compressed size, whichever is larger
    literal_kept: int = 64 << 10  # literals larger than this are skipped, not held in memory
    opcodes: int = 50_000_000
    stack: int = 10_000_000
    pickles: int = 4096  # pickles in one stream
    depth: int = 4  # containers nested in containers
    npy_header: int = 1 << 16
    literals_total: int = 64 << 20  # literal bytes kept over the whole file; past it, literals are skipped

    def inflated_bytes(self, compressed: int) -> int:
        return max(self.inflated_floor, self.inflation_ratio * max(compressed, 0))


class _Refused(Exception):
    """A structural limit was hit or the bytes lie about their own sizes: becomes a scan problem."""


# --- bounded readers ---------------------------------------------------------------------------------

_CHUNK = 1 << 20


class _Source:
    """A forward reader over a file or stream that never allocates more than what is there."""

    def __init__(self, f, size: int | None, what: str, limit: int | None = None):
        self.f, self.size, self.what, self.limit = f, size, what, limit
        self.pos = 0

    def read(self, n: int) -> bytes:
        if n < 0:
            raise _Refused(f"a negative length ({n})")
        if self.size is not None and n > self.size - self.pos:
            raise _Refused(f"{self.what} declares {n} bytes where {self.size - self.pos} remain")
        if self.limit is not None and self.pos + n > self.limit:
            raise _Refused(f"{self.what} inflates past the scan's limit of {self.limit} bytes "
                           f"(a decompression bomb, or a file larger than the stated bound)")
        parts, left = [], n
        while left:
            chunk = self.f.read(min(left, _CHUNK))
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
        data = b"".join(parts)
        self.pos += len(data)
        return data

    def read_exact(self, n: int) -> bytes:
        data = self.read(n)
        if len(data) != n:
            raise _Refused(f"{self.what} ends inside a value ({len(data)} of {n} bytes)")
        return data

    def skip(self, n: int) -> None:
        if n < 0:
            raise _Refused(f"a negative length ({n})")
        if self.size is not None:
            if n > self.size - self.pos:
                raise _Refused(f"{self.what} declares {n} bytes where {self.size - self.pos} remain")
            if getattr(self.f, "seekable", lambda: False)():
                self.f.seek(n, io.SEEK_CUR)
                self.pos += n
                return
        left = n
        while left:
            got = len(self.read(min(left, _CHUNK)))
            if not got:
                raise _Refused(f"{self.what} ends inside a value")
            left -= got

    def readline(self, cap: int = 1 << 16) -> bytes:
        out = bytearray()
        while len(out) < cap:
            b = self.read(1)
            if not b:
                break
            out += b
            if b == b"\n":
                return bytes(out)
        raise _Refused(f"{self.what}: a text argument without its newline within {cap} bytes")

    def at_end(self) -> bool:
        if self.size is not None:
            return self.pos >= self.size
        b = self.f.read(1)
        if not b:
            return True
        self._pushback(b)
        return False

    def _pushback(self, b: bytes) -> None:
        rest = self.f
        self.f = _Prefixed(b, rest)
        self.pos -= len(b)


class _Prefixed:
    def __init__(self, head: bytes, rest):
        self.head, self.rest = head, rest

    def read(self, n: int) -> bytes:
        if self.head:
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self.rest.read(n)

    def seekable(self) -> bool:
        return False


class _Inflate(io.RawIOBase):
    """Decompresses a stream chunk by chunk (zlib/gzip/bz2/xz, concatenated streams included) and
    refuses to produce more than ``limit`` bytes: a decompression bomb stops there."""

    def __init__(self, raw, codec: str, limit: int, what: str):
        self.raw, self.codec, self.limit, self.what = raw, codec, limit, what
        self.dec = self._new()
        self.buf = b""
        self.total = 0
        self.done = False

    def _new(self):
        import bz2
        import lzma
        import zlib

        return {"zlib": lambda: zlib.decompressobj(), "gzip": lambda: zlib.decompressobj(wbits=31),
                "bz2": bz2.BZ2Decompressor, "lzma": lzma.LZMADecompressor}[self.codec]()

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        want = len(b)
        while not self.buf and not self.done:
            self._fill(want)
        data, self.buf = self.buf[:want], self.buf[want:]
        b[:len(data)] = data
        return len(data)

    def _fill(self, want: int) -> None:
        dec = self.dec
        zlib_like = self.codec in ("zlib", "gzip")
        if dec.eof:
            self._next_stream(dec.unused_data)
            return
        if zlib_like:
            data = dec.unconsumed_tail or self.raw.read(_CHUNK)
        else:
            data = self.raw.read(_CHUNK) if dec.needs_input else b""
        if not data and (zlib_like or dec.needs_input):
            self.done = True
            return
        out = dec.decompress(data, max(want, 1))
        self.total += len(out)
        if self.total > self.limit:
            raise _Refused(f"{self.what} inflates past the scan's limit of {self.limit} bytes (a decompression "
                           f"bomb; the limit is the larger of {ScanLimits.inflated_floor >> 20} MiB and "
                           f"{ScanLimits.inflation_ratio}x the compressed size)")
        self.buf += out

    def _next_stream(self, unused: bytes) -> None:
        rest = unused or self.raw.read(_CHUNK)
        if not rest.strip(b"\x00"):
            self.done = True
            return
        self.dec = self._new()
        self.raw = _Prefixed(rest, self.raw)


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
_BIG = object()  # a literal too large to keep


class _Obj:
    """An object the pickle would build: its callable (a GlobalRef or unknown), args, and BUILD state."""

    __slots__ = ("func", "args", "state")

    def __init__(self, func, args):
        self.func, self.args, self.state = func, args, None


_LITERAL_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
                "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "INT", "BININT",
                "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"}
_PREFIX_WIDTH = {pickletools.TAKEN_FROM_ARGUMENT1: (1, False), pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
                 pickletools.TAKEN_FROM_ARGUMENT4U: (4, False), pickletools.TAKEN_FROM_ARGUMENT8U: (8, False)}


def _read_arg(op, src: _Source, limits: ScanLimits, budget: list[int]):
    """One opcode's argument, read through the bounded source; pickletools only decodes bytes we hold."""
    desc = op.arg
    if desc is None:
        return None
    if desc.n >= 0:
        return desc.reader(io.BytesIO(src.read_exact(desc.n)))
    if desc.n == pickletools.UP_TO_NEWLINE:
        line = src.readline()
        if desc.name == "stringnl_noescape_pair":
            line += src.readline()
        return desc.reader(io.BytesIO(line))
    width, signed = _PREFIX_WIDTH[desc.n]
    prefix = src.read_exact(width)
    length = int.from_bytes(prefix, "little", signed=signed)
    if length < 0:
        raise _Refused(f"a negative length ({length})")
    if length > limits.literal_kept or length > budget[1]:
        if desc.name in ("long1", "long4"):
            raise _Refused(f"an integer literal of {length} bytes")
        src.skip(length)
        return _BIG
    budget[1] -= length
    return desc.reader(io.BytesIO(prefix + src.read_exact(length)))


def _opcodes(src: _Source, limits: ScanLimits, budget: list[int]):
    while True:
        pos = src.pos
        code = src.read(1)
        if not code:
            raise _Refused("the pickle ends before its STOP opcode")
        op = pickletools.code2op.get(code.decode("latin-1"))
        if op is None:
            raise _Refused(f"byte {code!r} at {pos} is not a pickle opcode")
        budget[0] -= 1
        if budget[0] < 0:
            raise _Refused(f"more than {limits.opcodes} opcodes")
        yield op, _read_arg(op, src, limits, budget), pos
        if op.name == "STOP":
            return


class _Walk:
    """The state of one pickle's simulated run."""

    def __init__(self, src: _Source, member: str, report: ScanReport, limits: ScanLimits, budget: list[int],
                 storages: list | None):
        self.src, self.member, self.report, self.limits, self.budget = src, member, report, limits, budget
        self.storages = storages  # legacy torch: the persistent ids of storages, in order seen
        self.stack: list = []
        self.memo: dict = {}

    def pop(self, n: int = 1) -> list:
        stack = self.stack
        if len(stack) < n:
            raise _Refused("stack underflow")
        out = stack[len(stack) - n:]
        del stack[len(stack) - n:]
        return out

    def pop_mark(self) -> list:
        stack = self.stack
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                items = stack[i + 1:]
                del stack[i:]
                return items
        raise _Refused("no MARK on the stack")

    def push(self, value) -> None:
        if len(self.stack) >= self.limits.stack:
            raise _Refused(f"more than {self.limits.stack} values on the stack")
        self.stack.append(value)

    def add_global(self, module, name, op, pos) -> GlobalRef:
        if not isinstance(module, str) or not isinstance(name, str):
            ref = GlobalRef("<unresolved>", "<unresolved>", op, pos, self.member, DANGEROUS)
        else:
            ref = GlobalRef(module, name, op, pos, self.member, classify(module, name))
        self.report.globals.append(ref)
        return ref

    def run(self, joblib_arrays: bool):
        """Walk one pickle (to its STOP) from the source's position; raw joblib array data is skipped.
        Returns the simulated value the pickle would return (a placeholder unless it is literal data)."""
        push, pop, pop_mark, stack, memo = self.push, self.pop, self.pop_mark, self.stack, self.memo
        for op, arg, pos in _opcodes(self.src, self.limits, self.budget):
            name = op.name
            if name in _LITERAL_OPS:
                push(arg)
            elif name == "NONE":
                push(None)
            elif name in ("NEWTRUE", "NEWFALSE"):
                push(name == "NEWTRUE")
            elif name == "MARK":
                push(_MARK)
            elif name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                ref = self.add_global(module, attr, name, pos)
                push(_Obj(ref, tuple(pop_mark())) if name == "INST" else ref)
            elif name == "STACK_GLOBAL":
                module, attr = pop(2)
                push(self.add_global(module, attr, name, pos))
            elif name in ("EXT1", "EXT2", "EXT4"):
                self.report.globals.append(GlobalRef("copyreg.extension", str(arg), name, pos, self.member,
                                                     DANGEROUS))
                push(_UNKNOWN)
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1] if stack else _UNKNOWN
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1] if stack else _UNKNOWN
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                push(memo.get(arg, _UNKNOWN))
            elif name == "EMPTY_LIST":
                push([])
            elif name == "LIST":
                push(pop_mark())
            elif name == "APPEND":
                (v,) = pop(1)
                if stack and isinstance(stack[-1], list):
                    stack[-1].append(v)
            elif name == "APPENDS":
                items = pop_mark()
                if stack and isinstance(stack[-1], list):
                    stack[-1].extend(items)
            elif name == "EMPTY_TUPLE":
                push(())
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                push(tuple(pop(int(name[-1]))))
            elif name == "TUPLE":
                push(tuple(pop_mark()))
            elif name == "EMPTY_DICT":
                push({})
            elif name == "DICT":
                push(_to_dict(pop_mark()))
            elif name == "SETITEM":
                k, v = pop(2)
                _set_items(stack[-1] if stack else None, [k, v])
            elif name == "SETITEMS":
                items = pop_mark()
                _set_items(stack[-1] if stack else None, items)
            elif name in ("REDUCE", "NEWOBJ"):
                func, args = pop(2)
                push(_Obj(func, args))
            elif name == "NEWOBJ_EX":
                func, args, _kwargs = pop(3)
                push(_Obj(func, args))
            elif name == "OBJ":
                items = pop_mark()
                push(_Obj(items[0] if items else _UNKNOWN, tuple(items[1:])))
            elif name == "BINPERSID":
                (pid,) = pop(1)
                if self.storages is not None and isinstance(pid, tuple):
                    self.storages.append(pid)
                push(_UNKNOWN)
            elif name == "BUILD":
                (state,) = pop(1)
                target = stack[-1] if stack else None
                if isinstance(target, _Obj):
                    target.state = state
                    # By class name, whatever module path names it and however it was built (REDUCE,
                    # NEWOBJ, copyreg._reconstructor): joblib reads raw bytes after any NumpyArrayWrapper,
                    # so a scanner that did not would lose step with it.
                    cls = _class_of(target)
                    if joblib_arrays and isinstance(cls, GlobalRef) and cls.name == "NumpyArrayWrapper":
                        self._skip_joblib_array(target)
            elif name == "STOP":
                return stack[-1] if stack else _UNKNOWN
            else:
                self._generic(op)
        return _UNKNOWN

    def _generic(self, op) -> None:
        """Apply an opcode's documented stack effect, pushing unknown values."""
        before = list(op.stack_before)
        if pickletools.markobject in before:
            i = before.index(pickletools.markobject)
            self.pop_mark()
            if i:
                self.pop(i)
        elif before:
            self.pop(len(before))
        for item in op.stack_after:
            self.push(_MARK if item is pickletools.markobject else _UNKNOWN)

    def _skip_joblib_array(self, wrapper: _Obj) -> None:
        """joblib writes an array's bytes right after its wrapper's BUILD: skip them (or scan the nested
        pickle of an object array), reading the size from the wrapper's state, never from the data."""
        import numpy as np

        state = wrapper.state if isinstance(wrapper.state, dict) else {}
        shape, dtype = state.get("shape"), state.get("dtype")
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape) \
                or not isinstance(dtype, _Obj) or not isinstance(dtype.args, tuple) or not dtype.args \
                or not isinstance(dtype.args[0], str):
            raise _Refused("a joblib array whose shape or dtype is not literal data")
        descr = dtype.args[0]
        dstate = dtype.state if isinstance(dtype.state, tuple) else ()
        try:
            parsed = np.dtype(descr)  # a type string, parsed by numpy: no code runs
        except (TypeError, ValueError) as e:
            raise _Refused(f"a joblib array of unknown dtype {descr!r}") from e
        if parsed.hasobject:
            _Walk(self.src, self.member, self.report, self.limits, self.budget, None).run(joblib_arrays=True)
            self.report.pickles += 1  # object arrays are a nested pickle
            return
        # numpy takes the item size from the type string; only a size-less flexible type ("V", "S", "U")
        # takes it from the pickled state, so that is the only case the state may decide
        itemsize = parsed.itemsize
        if itemsize == 0:
            elsize = dstate[5] if len(dstate) > 5 else None
            if not isinstance(elsize, int) or elsize <= 0:
                raise _Refused(f"a joblib array of flexible dtype {descr!r} without an item size")
            itemsize = elsize
        if "numpy_array_alignment_bytes" in state:
            self.src.skip(self.src.read_exact(1)[0])
        count = 1
        for d in shape:
            count *= d
        self.src.skip(count * int(itemsize))


_CONSTRUCTORS = {("copyreg", "_reconstructor"), ("copyreg", "__newobj__"), ("copyreg", "__newobj_ex__"),
                 ("copy_reg", "_reconstructor")}


def _class_of(obj: _Obj):
    """The class an object is built as: the callable itself, or the class a copyreg constructor gets."""
    func = obj.func
    if isinstance(func, GlobalRef) and (func.module, func.name) in _CONSTRUCTORS and obj.args:
        return obj.args[0]
    return func


def _to_dict(items: list) -> dict:
    out: dict = {}
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


# --- containers ------------------------------------------------------------------------------------

# torch.save's legacy format starts with the pickle of this int: PROTO 2, LONG1 of 10 bytes, STOP.
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_HEAD = b"\x80\x02\x8a\x0a" + _TORCH_MAGIC.to_bytes(10, "little") + b"."
_STORAGE_ITEMSIZE = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2,
                     "Char": 1, "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16, "QInt8": 1,
                     "QUInt8": 1, "QInt32": 4, "Untyped": 1}
_ZIP, _NPY = b"PK\x03\x04", b"\x93NUMPY"
# The start of a protocol 0/1 pickle (MARK, an empty container, or GLOBAL's "module\nname\n"), and not of
# text such as TorchScript's code/*.py ("class Foo(Module):" is no GLOBAL).
_PROTOCOL0 = re.compile(rb"[(\]})]|c[A-Za-z_][\w.]*\n[A-Za-z_][\w.]*\n")
_CODECS = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "lzma"), (b"\x5d\x00\x00", "lzma"))


def _codec(head: bytes) -> str:
    for magic, codec in _CODECS:
        if head.startswith(magic):
            return codec
    if head[:1] == b"\x78" and len(head) > 1 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    return ""


class _Scanner:
    """Scans one file; ``budget`` (opcodes left, literal bytes left) is shared by every pickle in it so
    the file as a whole is bounded."""

    def __init__(self, report: ScanReport, limits: ScanLimits):
        self.report, self.limits = report, limits
        self.budget = [limits.opcodes, limits.literals_total]

    @staticmethod
    def where(member: str, offset: int) -> str:
        return f"{member}@{offset}" if member else f"offset {offset}"

    def pickles(self, src: _Source, member: str, *, legacy: bool = False, strict: bool = True) -> None:
        """Every pickle in the stream, to its end (a torch legacy stream ends in raw storages). Not
        strict: content that is not opcodes ends the walk quietly; the globals seen so far still count."""
        pids: list | None = [] if legacy else None
        count = 0
        while not src.at_end():
            if count >= self.limits.pickles:
                raise _Refused(f"more than {self.limits.pickles} pickles in one stream")
            start = src.pos
            try:
                result = _Walk(src, member, self.report, self.limits, self.budget, pids).run(joblib_arrays=True)
            except (_Refused, ValueError, UnicodeDecodeError, OverflowError, RecursionError) as e:
                if strict:
                    self.report.problems.append(f"pickle {count + 1} at {self.where(member, start)} cannot "
                                                f"be read as opcodes: {e}")
                return
            count += 1
            self.report.pickles += 1
            if legacy and count == 5:
                self._legacy_storages(src, pids or [], result)
                if not src.at_end():
                    self.report.problems.append(f"{src.size - src.pos if src.size else 'more'} bytes after the "
                                                f"torch storages at {self.where(member, src.pos)}")
                    self.pickles(src, member, strict=False)  # report what a payload there would import
                return

    def _legacy_storages(self, src: _Source, pids: list, keys) -> None:
        """Raw storage data follows the fifth pickle (the list of storage keys): per key, an int64
        element count and the bytes, sized by the storage type its persistent id names."""
        itemsize = {}
        for pid in pids:
            if len(pid) < 5 or pid[0] != "storage" or not isinstance(pid[1], GlobalRef) \
                    or not isinstance(pid[2], str):
                raise _Refused("a legacy torch storage reference that is not literal data")
            kind = pid[1].name.removesuffix("Storage")
            if kind not in _STORAGE_ITEMSIZE:
                raise _Refused(f"a legacy torch storage of unknown type {pid[1].name!r}")
            itemsize[pid[2]] = _STORAGE_ITEMSIZE[kind]
        if not isinstance(keys, list) or not all(isinstance(k, str) and k in itemsize for k in keys):
            raise _Refused("the legacy torch storage keys do not match the storages the object uses")
        for key in keys:
            count = int.from_bytes(src.read_exact(8), "little", signed=True)
            src.skip(count * itemsize[key])

    def stream(self, f, size: int | None, member: str, name: str, depth: int) -> None:
        """Any supported content, picked by its leading bytes (the file name only breaks ties)."""
        if depth > self.limits.depth:
            raise _Refused(f"containers nested more than {self.limits.depth} deep")
        head = _peek(f, 32)
        what = member or "file"
        if head[:4] == b"\x04\x22\x4d\x18":
            raise InputError("lz4-compressed joblib files are not scanned; re-save without lz4 compression")
        if head.startswith(_NPY):
            if depth == 0:
                self.report.format = "npy"
            self.npy(_Source(f, size, what), member)
            return
        codec = _codec(head)
        if codec:
            if depth == 0:
                self.report.format = f"joblib ({codec})"
            limit = self.limits.inflated_bytes(size or 0)
            inner = io.BufferedReader(_Inflate(f, codec, limit, what), _CHUNK)
            if _peek(inner, 4) == _ZIP:
                raise _Refused(f"{what}: a zip archive inside compressed data")
            self.stream(inner, None, member, name, depth + 1)
            return
        suffix = Path(name).suffix.lower()
        legacy = head.startswith(_TORCH_LEGACY_HEAD)
        if depth == 0 and suffix == ".joblib":
            self.report.format = "joblib"
        if depth == 0 and legacy:
            self.report.format = "torch-legacy"
        if not head:
            self.report.problems.append(f"{what}: empty: no pickle in it")
        elif head[:1] != b"\x80" and depth == 0 and suffix not in (".pkl", ".pickle", ".joblib"):
            self.report.problems.append("not a pickle (no protocol header)")
        else:
            self.pickles(_Source(f, size, what), member, legacy=legacy)

    def npy(self, src: _Source, member: str) -> None:
        import ast

        src.read_exact(6)
        major = src.read_exact(2)[0]
        hlen = int.from_bytes(src.read_exact(2 if major == 1 else 4), "little")
        if hlen > self.limits.npy_header:
            raise _Refused(f"a .npy header of {hlen} bytes (more than {self.limits.npy_header})")
        try:
            header = ast.literal_eval(src.read_exact(hlen).decode("latin1"))
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError) as e:
            self.report.problems.append(f"{member or 'file'}: unreadable .npy header ({e})")
            return
        if not isinstance(header, dict):
            self.report.problems.append(f"{member or 'file'}: a .npy header that is not a dict")
            return
        import numpy as np

        try:
            dtype = np.dtype(header.get("descr"))  # numpy's own reading of the type, however it is spelled
        except (TypeError, ValueError) as e:
            self.report.problems.append(f"{member or 'file'}: a .npy header with an unreadable dtype ({e})")
            return
        if dtype.hasobject:
            self.pickles(src, member)  # an object array is a pickle after the header

    def zip(self, z: zipfile.ZipFile, name: str, depth: int) -> None:
        infos = z.infolist()
        names = [i.filename for i in infos]
        is_npz = Path(name).suffix.lower() == ".npz" or bool(names and all(n.endswith(".npy") for n in names))
        if depth == 0:
            self.report.format = "npz" if is_npz else "torch-zip"
        pt2 = any(n.endswith("/archive_format") for n in names)
        if not is_npz and not pt2 and not any(n.endswith(".pkl") for n in names):
            self.report.problems.append(f"{name}: a zip archive with no pickle inside: not a torch checkpoint")
        raw = set() if is_npz else _raw_members(z, infos, self.limits)
        for info in infos:
            if info.is_dir() or info.filename in raw:
                continue  # raw tensor bytes: torch reads them as data, never as a pickle
            limit = self.limits.inflated_bytes(info.compress_size)
            if info.file_size > limit:
                raise _Refused(f"member {info.filename} inflates to {info.file_size} bytes from "
                               f"{info.compress_size} (over the limit of {limit})")
            if info.flag_bits & 0x1:  # zipfile would raise RuntimeError asking for a password
                raise _Refused(f"member {info.filename} is encrypted: its content cannot be scanned")
            with z.open(info) as f:
                self.member(f, info, depth)

    def member(self, f, info: zipfile.ZipInfo, depth: int) -> None:
        """A member is scanned when it is named or shaped as a pickle or holds a container, whatever its
        name; other members (version stamps, TorchScript code) are not pickles anything loads."""
        name = info.filename
        head = _peek(f, 256)
        if head.startswith(_ZIP):
            if depth + 1 > self.limits.depth:
                raise _Refused(f"containers nested more than {self.limits.depth} deep")
            data = _Source(f, info.file_size, name).read_exact(info.file_size)
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                self.zip(z, name, depth + 1)
        elif name.endswith(".pkl") or head[:1] == b"\x80" or head.startswith(_NPY) or _codec(head):
            self.stream(f, info.file_size, name, name, depth + 1)
        elif _PROTOCOL0.match(head):
            # an old-protocol pickle under any name: nothing in torch reads it, but say what it imports
            self.pickles(_Source(f, info.file_size, name), name)


def _raw_members(z: zipfile.ZipFile, infos: list, limits: ScanLimits) -> set[str]:
    """Members torch reads as raw tensor bytes, never as a pickle: ``<root>/data/<key>`` storages of a
    ``torch.save`` archive, and in a ``torch.export`` (.pt2) archive the weights and tensor constants its
    configs mark ``use_pickle: false``. Everything else that looks like a pickle is scanned."""
    import json

    names = {i.filename for i in infos}
    if not any(n.endswith("/archive_format") for n in names):
        return {n for n in names if len(n.split("/")) == 3 and n.split("/")[1] == "data"}
    raw = set()
    for info in infos:
        parts = info.filename.split("/")
        kind = parts[-2] if len(parts) >= 3 else ""
        if kind not in ("weights", "constants") or not parts[-1].endswith("_config.json"):
            continue
        if info.file_size > limits.npy_header * 256:
            raise _Refused(f"{info.filename}: a config of {info.file_size} bytes")
        try:
            config = json.loads(z.read(info)).get("config", {})
        except (ValueError, AttributeError) as e:
            raise _Refused(f"{info.filename}: not a readable archive config ({e})") from e
        folder = "/".join(parts[:-1])
        for entry in config.values() if isinstance(config, dict) else ():
            path = entry.get("path_name") if isinstance(entry, dict) else None
            if isinstance(path, str) and entry.get("use_pickle") is False \
                    and (kind == "weights" or path.startswith("tensor_")):
                raw.add(f"{folder}/{path}")
    return raw


def _peek(f, n: int) -> bytes:
    if hasattr(f, "peek"):
        return f.peek(n)[:n]
    pos = f.tell()
    data = f.read(n)
    f.seek(pos)
    return data


def _scan(open_file, size: int, name: str, limits: ScanLimits) -> ScanReport:
    import lzma
    import zlib

    report = ScanReport(Path(name), "pickle")
    scanner = _Scanner(report, limits)
    try:
        with open_file() as f:
            if _peek(f, 4) == _ZIP:
                with zipfile.ZipFile(f) as z:
                    scanner.zip(z, name, 0)
            else:
                scanner.stream(f, size, "", name, 0)
    except _Refused as e:
        report.problems.append(str(e))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, ValueError,
            zlib.error, lzma.LZMAError, RecursionError, MemoryError) as e:
        # broken archives, corrupt compressed data, unsupported zip compression: unreadable content
        report.problems.append(f"cannot read it: {type(e).__name__}: {e}")
    return report


def scan_bytes(data: bytes, name: str = "", limits: ScanLimits = ScanLimits()) -> ScanReport:
    """Scan a file's content held in memory; ``name`` (its file name) breaks ties between containers."""
    return _scan(lambda: io.BufferedReader(io.BytesIO(data)), len(data), name, limits)


def scan_file(path: str | Path, limits: ScanLimits = ScanLimits()) -> ScanReport:
    """Stream ``path`` through the scanner; a missing or special file is an InputError."""
    p = require_file(path, empty_ok=True)
    try:
        size = p.stat().st_size
        with open(p, "rb"):
            pass
    except OSError as e:
        raise InputError(f"{p}: cannot read it ({e.strerror})") from e
    report = _scan(lambda: open(p, "rb"), size, p.name, limits)
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
            "; pass `options.trust_pickle` only if you trust its author"
        raise InputError(f"{report.path}: refused to load this pickle: {what}{hint}")
    if report.flagged:
        log.warning("%s: loading with `options.trust_pickle` despite globals outside the allow-list: %s", report.path,
                    ", ".join(f"{g.module}.{g.name}" for g in report.flagged))
    return report


def require_safe_pickle(path: str | Path, trust_pickle: bool) -> ScanReport:
    """The gate for a full unpickle: nothing flagged (see ``refuse_unsafe``), and `options.trust_pickle` given."""
    report = refuse_unsafe(path, trust_pickle)
    if not trust_pickle:
        raise InputError(f"{report.path}: a pickle-based file; the scan found only allow-listed globals, but "
                         f"unpickling still runs code: pass `options.trust_pickle` if you trust its author, or save the "
                         f"model in a safe format (.skops, .keras, .onnx, .pt2)")
    return report
