"""The x86-64 ``cpuid`` instruction, executed in this process: the features kernels will actually see.

Why not only /proc/cpuinfo: the kernel lists the host CPU, while onnxruntime's MLAS, torch and
llama.cpp dispatch on what ``cpuid`` answers *to this process*. The two differ under emulation
(``qemu-x86_64 -cpu EPYC-Milan`` runs a program on an AVX2-only Zen 3 model while /proc/cpuinfo still
shows the host's AVX-512 VNNI) and under hypervisors that mask features. Int8 settings chosen from
the wrong source pick ``reduce_range`` for kernels that will not run. forgeml intersects both: a
feature counts only when the kernel enables it (its state is saved, so it is listed) and ``cpuid``
reports it.

The instruction runs from a few bytes of machine code mapped executable; where that is not allowed
(no x86-64, a W^X policy) ``query`` answers None and callers fall back to /proc/cpuinfo alone.
"""

from __future__ import annotations

import platform
from functools import lru_cache

# void f(uint32 leaf /*edi*/, uint32 subleaf /*esi*/, uint32 out[4] /*rdx*/): out = eax, ebx, ecx, edx
_CODE = bytes.fromhex(
    "53"          # push rbx (callee-saved, cpuid writes it)
    "89f8"        # mov eax, edi
    "89f1"        # mov ecx, esi
    "4989d0"      # mov r8, rdx (cpuid writes rdx)
    "0fa2"        # cpuid
    "418900"      # mov [r8], eax
    "41895804"    # mov [r8+4], ebx
    "41894808"    # mov [r8+8], ecx
    "4189500c"    # mov [r8+12], edx
    "5b"          # pop rbx
    "c3"          # ret
)

# (name as /proc/cpuinfo spells it, leaf, subleaf, register index eax=0..edx=3, bit)
BITS = (
    ("avx2", 7, 0, 1, 5),
    ("avx512f", 7, 0, 1, 16),
    ("avx512bw", 7, 0, 1, 30),
    ("avx512vl", 7, 0, 1, 31),
    ("avx512_vnni", 7, 0, 2, 11),
    ("amx_tile", 7, 0, 3, 24),
    ("avx_vnni", 7, 1, 0, 4),
    ("avx512_bf16", 7, 1, 0, 5),
)


@lru_cache(maxsize=1)
def _function():
    import ctypes
    import mmap

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, ValueError, AttributeError):
        return None
    page.write(_CODE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    fn = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32))(address)
    fn._page = page  # the mapping lives as long as the function
    return fn


def registers(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int] | None:
    """(eax, ebx, ecx, edx) of ``cpuid(leaf, subleaf)``; None where the instruction cannot be run here."""
    import ctypes

    fn = _function()
    if fn is None:
        return None
    out = (ctypes.c_uint32 * 4)()
    fn(leaf, subleaf, out)
    return out[0], out[1], out[2], out[3]


@lru_cache(maxsize=1)
def query() -> frozenset[str] | None:
    """The features of ``BITS`` that ``cpuid`` reports to this process; None where it cannot be asked."""
    top = registers(0)
    if top is None:
        return None
    found = set()
    for name, leaf, sub, reg, bit in BITS:
        if leaf > top[0] or (sub and sub > registers(leaf, 0)[0]):
            continue
        if registers(leaf, sub)[reg] >> bit & 1:
            found.add(name)
    return frozenset(found)


def known() -> frozenset[str]:
    """The flag names ``query`` can confirm or deny."""
    return frozenset(name for name, *_ in BITS)


def brand() -> str | None:
    """The processor's brand string as ``cpuid`` gives it to this process (an emulated model names itself)."""
    top = registers(0x80000000)
    if top is None or top[0] < 0x80000004:
        return None
    raw = b"".join(r.to_bytes(4, "little") for leaf in range(0x80000002, 0x80000005) for r in registers(leaf))
    return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip() or None
