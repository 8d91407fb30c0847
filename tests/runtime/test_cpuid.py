"""runtime/cpuid: the features the kernels see, asked of the instruction itself, and an emulated CPU
believed over the host's /proc/cpuinfo."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys

import pytest

from forgeml.runtime import cpuid
from forgeml.runtime.machine import confirmed, cpuinfo_flags

pytestmark = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="cpuid is x86-64")

# numpy's own dispatch asks cpuid (and the OS) too: an independent reader of the same instruction
NUMPY_NAMES = {"avx2": "AVX2", "avx512f": "AVX512F", "avx512_vnni": "AVX512VNNI"}


def test_query_agrees_with_numpys_dispatch():
    np_core = pytest.importorskip("numpy._core._multiarray_umath")
    seen = cpuid.query()
    assert seen is not None, "cpuid could not be run on an x86-64 Linux machine"
    flags = cpuinfo_flags()
    for ours, theirs in NUMPY_NAMES.items():
        assert (ours in flags) == bool(np_core.__cpu_features__[theirs]), ours


def test_confirmed_drops_what_cpuid_denies_and_keeps_what_it_cannot_judge():
    seen = cpuid.query()
    listed = set(cpuid.known()) | {"sse4_2", "made_up_flag"}
    assert confirmed(listed) == set(seen) | {"sse4_2", "made_up_flag"}


def test_brand_names_the_processor():
    assert cpuid.brand()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-user is not installed (apt install qemu-user)")
def test_an_emulated_avx2_zen3_gets_the_avx2_int8_settings():
    """Under qemu's EPYC-Milan model /proc/cpuinfo still lists the host; forgeml must follow cpuid."""
    code = ("from forgeml.runtime.machine import detect; "
            "from forgeml.passes.precision.cpu_features import int8_settings; "
            "m = detect(); s = int8_settings(); print(m.cpu); print(' '.join(m.flags)); print(s.isa, s.reduce_range)")
    r = subprocess.run(["qemu-x86_64", "-cpu", "EPYC-Milan", sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    cpu, flags, settings = r.stdout.strip().splitlines()
    assert "EPYC-Milan" in cpu
    assert flags.split() == ["avx2"]
    assert settings == "avx2 True"
