#!/usr/bin/env bash
# The main job: set up, then convert a built-in zoo model to every target this machine can build,
# with its parity report. TensorRT joins only where it is installed and a GPU is visible.
# It installs only what these targets need (torch, tflite): the gguf extra's llama-cpp-python has no
# Linux wheel and compiles for ~8 minutes, so it is built by the test set-up (or
# `FORGEML_EXTRAS=all bash scripts/setup.sh`), never before the first result.
set -euo pipefail
cd "$(dirname "$0")/.."
FORGEML_EXTRAS="${FORGEML_EXTRAS:-torch,tflite}" bash scripts/setup.sh
out="${1:-out/cnn}"
targets="onnx,safetensors,tflite,torch-aoti"
if .venv/bin/python -c "import tensorrt" 2>/dev/null && command -v nvidia-smi >/dev/null; then
  targets="$targets,tensorrt"
fi
.venv/bin/forgeml convert zoo:cnn --to "$targets" -o "$out" --force
echo
echo "manifest: $out/manifest.json   reports: $out/report.md, $out/report.html"
