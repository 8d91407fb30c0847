#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with forgeml and the pinned known-good stack.
# FORGEML_EXTRAS picks the extras (default: all); FORGEML_VENV the venv path (default: .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${FORGEML_VENV:-.venv}"
extras="${FORGEML_EXTRAS:-all}"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
fi
# llama-cpp-python (the gguf extra) has no Linux wheel on PyPI and pip would compile it (~8 min) on every
# fresh venv. Build a portable wheel (no -march=native: it must run on any x86-64 with AVX2) once, keyed
# on version, CMake flags, Python tag and platform, and let pip take it from that cache.
find_links=()
case ",$extras," in
  *,all,*|*,gguf,*)
    llama_version="$(sed -n 's/^llama-cpp-python==//p' constraints.txt)"
    cmake_args="-DGGML_NATIVE=OFF"
    tag="$("$venv/bin/python" -c 'import sys, sysconfig; print(sys.implementation.cache_tag.replace("cpython-", "cp") + "-" + sysconfig.get_platform().replace("-", "_").replace(".", "_"))')"
    key="llama-cpp-python-$llama_version-$(printf '%s' "$cmake_args" | sha256sum | cut -c1-12)-$tag"
    wheels="${XDG_CACHE_HOME:-$HOME/.cache}/forgeml-wheels/$key"
    if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
      echo "building llama-cpp-python $llama_version (portable wheel, about 8 minutes; cached in $wheels)" >&2
      rm -rf "$wheels.tmp.$$"
      CMAKE_ARGS="$cmake_args" "$venv/bin/python" -m pip wheel -q --no-deps "llama-cpp-python==$llama_version" \
        -w "$wheels.tmp.$$"
      mkdir -p "$(dirname "$wheels")"
      mv -T "$wheels.tmp.$$" "$wheels" 2>/dev/null || rm -rf "$wheels.tmp.$$"  # a parallel run won
    fi
    find_links=(--find-links "$wheels")
    ;;
esac
stamp="$venv/.forgeml-setup"
hash="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
want="$hash $extras"
have="$(cat "$stamp" 2>/dev/null || true)"
# Already installed: the same extras, or everything (a demo after the test set-up installs nothing).
if [ "$have" != "$want" ] && [ "$have" != "$hash all" ]; then
  echo "forgeml setup: installing .[$extras] into $venv (log: $venv/setup.log)" >&2
  if ! "$venv/bin/python" -m pip install ${find_links[@]+"${find_links[@]}"} -c constraints.txt -e ".[$extras]" > "$venv/setup.log" 2>&1; then
    grep -v "^WARNING: Location" "$venv/setup.log" | tail -40 >&2
    echo "forgeml setup: pip install failed (full log: $venv/setup.log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
