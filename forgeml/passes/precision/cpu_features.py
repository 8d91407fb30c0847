"""What this CPU can do for int8, and the quantizer settings that follow from it.

Detected, never assumed (the CI machine and a user's laptop differ). The choice is recorded in
the manifest so a reader knows which instruction set a quantized model was tuned for.

Why the settings differ:
- x86 without AVX-512 VNNI multiplies u8×s8 with ``vpmaddubsw``, whose 16-bit intermediate sum can
  saturate; quantizing weights to 7 bits (``reduce_range``) avoids it at a small accuracy cost.
- x86 with AVX-512 VNNI (``vpdpbusd``) accumulates in 32 bits: full 8-bit range, u8 activations ×
  s8 weights.
- ARM64 (NEON dot product) handles s8×s8 natively: signed activations, full range.
Per-channel weight scales are chosen everywhere: they cost nothing at run time on these kernels and
recover most of the accuracy per-tensor scales lose on layers with uneven output channels.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import asdict, dataclass
from functools import lru_cache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CpuFeatures:
    arch: str  # "x86_64" | "arm64" | other platform.machine() values
    avx2: bool = False
    avx512f: bool = False
    avx512_vnni: bool = False
    avx_vnni: bool = False
    neon_dot: bool = False

    @property
    def isa(self) -> str:
        """The instruction set the int8 kernels will use, in one word."""
        if self.arch == "arm64":
            return "arm64-dotprod" if self.neon_dot else "arm64"
        if self.avx512_vnni:
            return "avx512_vnni"
        if self.avx_vnni:
            return "avx_vnni"
        if self.avx512f:
            return "avx512"
        if self.avx2:
            return "avx2"
        return self.arch or "unknown"


@dataclass(frozen=True)
class Int8Settings:
    per_channel: bool
    reduce_range: bool
    activation_type: str  # "uint8" | "int8"
    weight_type: str  # "int8"
    isa: str
    why: str

    def to_json(self) -> dict:
        return asdict(self)


def _flags_darwin() -> set[str]:
    import subprocess

    flags: set[str] = set()
    for key in ("machdep.cpu.features", "machdep.cpu.leaf7_features"):
        try:
            out = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        flags |= {f.lower().replace(".", "_") for f in out.split()}
    return flags


def parse(machine: str, flags: set[str]) -> CpuFeatures:
    """Features from an architecture name and a set of cpuinfo-style flags (testable without the CPU)."""
    m = machine.lower()
    if m in ("aarch64", "arm64"):
        return CpuFeatures(arch="arm64", neon_dot="asimddp" in flags or platform.system() == "Darwin")
    arch = "x86_64" if m in ("x86_64", "amd64", "x64") else m
    return CpuFeatures(arch=arch, avx2="avx2" in flags, avx512f="avx512f" in flags,
                       avx512_vnni="avx512_vnni" in flags or "avx512vnni" in flags,
                       avx_vnni="avx_vnni" in flags or "avxvnni" in flags)


@lru_cache(maxsize=1)
def detect() -> CpuFeatures:
    system = platform.system()
    from forgeml.runtime.machine import cpuinfo_flags

    flags = _flags_darwin() if system == "Darwin" else cpuinfo_flags()
    features = parse(platform.machine(), flags)
    log.debug("cpu features: %s", features)
    return features


def int8_settings(features: CpuFeatures | None = None) -> Int8Settings:
    """The int8 settings for ``features`` (default: this machine)."""
    f = features or detect()
    if f.arch == "arm64":
        return Int8Settings(True, False, "int8", "int8", f.isa, "ARM64: s8×s8 dot products, full range")
    if f.avx512_vnni or f.avx_vnni:
        return Int8Settings(True, False, "uint8", "int8", f.isa, "VNNI accumulates u8×s8 in 32 bits: full range")
    if f.arch == "x86_64":
        return Int8Settings(True, True, "uint8", "int8", f.isa,
                            "x86 without VNNI: u8×s8 pairs can saturate 16 bits; 7-bit weights (reduce_range)")
    return Int8Settings(True, True, "uint8", "int8", f.isa, "unknown CPU: the conservative x86 settings")
