#!/usr/bin/env bash
# The main job: set up, then convert a built-in zoo model to every target available, with its parity report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="${1:-out/cnn}"
.venv/bin/forgeml convert zoo:cnn --to onnx,safetensors -o "$out" --force
echo
echo "manifest: $out/manifest.json   report: $out/report.md"
