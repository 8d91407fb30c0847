"""The manifest's ``machine`` entry as the one line both reports show beside their numbers."""

from __future__ import annotations

from forgeml.manifest import MachineRecord


def machine_text(m: MachineRecord | dict | None) -> str:
    """CPU model, CPU counts, the SIMD flags that pick kernels, load; '' when the manifest has none."""
    if not m:
        return ""
    m = MachineRecord.from_json(m)
    flags = " ".join(m.flags) or "no AVX2"
    load = f", load {m.load_1m:.2f}" if m.load_1m is not None else ""

    def known(v):
        return "?" if v is None else v

    return f"{known(m.cpu)}, {known(m.logical_cpus)} CPUs ({known(m.usable_cpus)} usable), {flags}{load}"
