#!/usr/bin/env bash
# `make demo`: the main jobs on the offline default model (Lite0), with no network.
set -euo pipefail
OUT=${1:-demo-out}
BIN=.venv/bin
mkdir -p "$OUT"
echo "== 1. classifier: top-3 ImageNet labels with the offline Lite0 weights"
"$BIN/python" scripts/sample_photos.py "$OUT/photos"
"$BIN/headstart" classify "$OUT"/photos/*.jpg --top 3
echo
echo "== the seed's model: VGG16 without top at 300x300 + Flatten -> Dense 1024 relu -> Dense 10"
"$BIN/headstart" summary vgg16 --weights none --no-top --input-shape 300,300 --head flatten,dense:1024:relu --classes 10 | tail -8
