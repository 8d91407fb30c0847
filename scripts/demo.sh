#!/usr/bin/env bash
# The main job: set up, then convert a built-in zoo model to every target this machine can build,
# with its parity report. TensorRT joins only where it is installed and a GPU is visible.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="${1:-out/cnn}"
targets="onnx,safetensors,tflite,torch-aoti"
if .venv/bin/python -c "import tensorrt" 2>/dev/null && command -v nvidia-smi >/dev/null; then
  targets="$targets,tensorrt"
fi
.venv/bin/forgeml convert zoo:cnn --to "$targets" -o "$out" --force
echo
echo "manifest: $out/manifest.json   reports: $out/report.md, $out/report.html"
