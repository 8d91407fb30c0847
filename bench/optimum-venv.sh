#!/usr/bin/env bash
# Creates the separate venv bench/bert.py runs Optimum in, and prints its python.
#
# Why apart: optimum-onnx 0.1.0 pins transformers<4.58, which cannot co-install with forgeml's
# transformers 5.x. The venv sees the main venv's packages through a .pth file placed after its
# own site-packages, so torch, onnx and onnxruntime are the very builds forgeml is timed with (the
# comparison measures recipes, not builds); only Optimum and the transformers/hub/tokenizers it
# pins live in the venv, installed --no-deps at exact versions. Nothing in the main venv changes.
#
#   bench/optimum-venv.sh                    # → ~/.cache/forgeml/optimum-venv (or $FORGEML_OPTIMUM_VENV)
#   PYTHON=/path/to/main/python bench/optimum-venv.sh
set -euo pipefail
PY=${PYTHON:-python3}
VENV=${FORGEML_OPTIMUM_VENV:-$HOME/.cache/forgeml/optimum-venv}
PINS=(optimum-onnx==0.1.0 optimum==2.1.0 transformers==4.57.6 huggingface-hub==0.36.2 tokenizers==0.22.2)
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import optimum.onnxruntime' 2>/dev/null; then
  main_site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$PY" -m venv --clear "$VENV" >&2
  venv_site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$main_site" > "$venv_site/zz-forgeml-main-venv.pth"
  lock=/work/tools/pip.lock
  if [ -e "$lock" ]; then runner=(flock "$lock"); else runner=(); fi
  "${runner[@]}" "$VENV/bin/pip" install -q --no-deps "${PINS[@]}" >&2
  "$VENV/bin/python" -c 'import optimum.onnxruntime, transformers; assert transformers.__version__.startswith("4.57")' >&2
fi
echo "$VENV/bin/python"
