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
echo "== 2-4. train on real data: ELPV solar cells, functional vs defective (auto plans the strategies, keeps the best)"
"$BIN/headstart" data elpv "$OUT/elpv"
# --overwrite: a second `make demo` trains again (a finished run is otherwise never replaced silently)
"$BIN/headstart" train "$OUT/elpv" --out "$OUT/run-elpv" --overwrite
echo
echo "== use the trained model (exported to ONNX, parity-checked; predict runs it with ONNX Runtime)"
"$BIN/headstart" export "$OUT/run-elpv"
"$BIN/headstart" predict "$OUT/run-elpv" "$OUT"/elpv/test/defective/$(ls "$OUT/elpv/test/defective" | head -1) --top 2
echo "report (open in a browser): $OUT/run-elpv/report.html"
echo "plots: $OUT/run-elpv/confusion_matrix.png $OUT/run-elpv/training_curves.png"
