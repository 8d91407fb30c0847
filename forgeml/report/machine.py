"""The manifest's ``machine`` entry as the one line both reports show beside their numbers."""

from __future__ import annotations


def machine_text(m: dict | None) -> str:
    """CPU model, CPU counts, the SIMD flags that pick kernels, load; '' when the manifest has none."""
    if not m:
        return ""
    flags = " ".join(m.get("flags", [])) or "no AVX2"
    load = f", load {m['load_1m']:.2f}" if m.get("load_1m") is not None else ""
    return f"{m.get('cpu', '?')}, {m.get('logical_cpus', '?')} CPUs ({m.get('usable_cpus', '?')} usable), {flags}{load}"
