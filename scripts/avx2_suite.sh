#!/usr/bin/env bash
# Run tests as an AVX2-only AMD Zen 3 (no AVX-512, no VNNI) on any x86-64 Linux machine: qemu's user-mode
# emulator with its EPYC-Milan model. onnxruntime, numpy and torch dispatch on the emulated cpuid, and
# forgeml's int8 settings follow it (forgeml/runtime/cpuid.py), so the quantizer's AVX2 choices and
# onnxruntime's AVX2 int8 kernels are the ones under test. About 8x slower than native.
#   bash scripts/avx2_suite.sh                      # the int8 and parity tests
#   bash scripts/avx2_suite.sh tests/passes -k fallback
set -euo pipefail
cd "$(dirname "$0")/.."
command -v qemu-x86_64 >/dev/null || { echo "needs qemu-user: apt-get install qemu-user" >&2; exit 2; }
[ -x .venv/bin/python ] || { echo "run bash scripts/setup.sh first" >&2; exit 2; }
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(tests/passes tests/parity tests/runtime/test_cpuid.py)
qemu-x86_64 -cpu EPYC-Milan .venv/bin/python -c \
  "from forgeml.runtime.machine import detect; print('emulated', detect().line())" 2>/dev/null
exec qemu-x86_64 -cpu EPYC-Milan .venv/bin/python -m pytest -q -p no:cacheprovider -m "not gpu" "${args[@]}" \
  2> >(grep -v "TCG doesn't support requested feature" >&2)
