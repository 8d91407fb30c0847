"""The machine a number came from: CPU model, the SIMD flags that change kernels, threads, load.

Latency and quantized accuracy depend on the CPU (VNNI or AMX pick different int8 kernels; a loaded
2-core box is slower by multiples), so every number forgeml records or a bench prints carries this
record. Read from /proc and ``os`` only: cheap enough for ``forgeml --help`` paths and bench scripts.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The flags that change which kernels onnxruntime, torch and llama.cpp pick on x86-64.
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile")
# Environment variables that set runtime thread pools; recorded when set.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCH_NUM_THREADS", "FORGEML_THREADS")


@dataclass(frozen=True)
class Machine:
    cpu: str
    arch: str
    logical_cpus: int
    usable_cpus: int  # what this process may run on (cgroup/affinity), often fewer than logical
    flags: tuple[str, ...]
    threads: dict[str, str] = field(default_factory=dict)
    load_1m: float | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["flags"] = list(self.flags)
        return d

    def line(self) -> str:
        """One line a person reads first: which CPU, which flags, how many threads, how busy."""
        flags = " ".join(self.flags) or "no AVX2"
        threads = "".join(f", {k}={v}" for k, v in self.threads.items())
        load = f", load {self.load_1m:.2f}" if self.load_1m is not None else ""
        return (f"machine: {self.cpu} ({self.arch}), {self.logical_cpus} logical CPUs "
                f"({self.usable_cpus} usable), flags: {flags}{threads}{load}")


def _cpuinfo(text: str) -> tuple[str, set[str]]:
    """The CPU model and its flags from /proc/cpuinfo's text (x86 "flags", ARM "Features")."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags


def confirmed(flags: set[str]) -> set[str]:
    """``flags`` less those the ``cpuid`` instruction denies to this process (emulators and hypervisors
    show the host's list in /proc/cpuinfo; kernels dispatch on ``cpuid``). See ``runtime.cpuid``."""
    from forgeml.runtime import cpuid

    seen = cpuid.query()
    if seen is None:
        return set(flags)
    return {f for f in flags if f not in cpuid.known() or f in seen}


def cpuinfo_flags() -> set[str]:
    """This CPU's flags as Linux lists them and ``cpuid`` confirms (empty where /proc/cpuinfo cannot be read)."""
    try:
        return confirmed(_cpuinfo(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))[1])
    except OSError:
        return set()


def detect(cpuinfo: str | None = None) -> Machine:
    """This machine now; ``cpuinfo`` replaces /proc/cpuinfo's text (other systems fall back to platform).
    The flags of this machine are those ``cpuid`` confirms; a given text is taken as it is."""
    given = cpuinfo is not None
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = _cpuinfo(cpuinfo)
    if not given:
        from forgeml.runtime import cpuid

        flags = confirmed(flags)
        model = cpuid.brand() or model
    logical = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = logical
    load = None
    try:
        load = round(float(Path("/proc/loadavg").read_text().split()[0]), 2)
    except (OSError, ValueError, IndexError):
        if hasattr(os, "getloadavg"):
            load = round(os.getloadavg()[0], 2)
    return Machine(cpu=model or platform.processor() or platform.machine() or "unknown",
                   arch=platform.machine(), logical_cpus=logical, usable_cpus=usable,
                   flags=tuple(f for f in FLAGS if f in flags),
                   threads={k: os.environ[k] for k in THREAD_VARS if os.environ.get(k)}, load_1m=load)



def print_machine(file=None) -> Machine:
    """Print this machine's line (stdout by default) and return it: every bench script's first line."""
    import sys

    m = detect()
    print(m.line(), file=file or sys.stdout, flush=True)
    return m


def trim_heap() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``), so RSS drops when a large model is
    dropped; a no-op where the C library has no such call."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass
