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
stamp="$venv/.forgeml-setup"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16) $extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "forgeml setup: installing .[$extras] into $venv (log: $venv/setup.log)" >&2
  if ! "$venv/bin/python" -m pip install -c constraints.txt -e ".[$extras]" > "$venv/setup.log" 2>&1; then
    grep -v "^WARNING: Location" "$venv/setup.log" | tail -40 >&2
    echo "forgeml setup: pip install failed (full log: $venv/setup.log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
