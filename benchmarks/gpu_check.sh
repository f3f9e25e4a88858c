#!/usr/bin/env bash
# The GPU checks, as one script (issue 23): whoever has a machine with one CUDA GPU runs exactly this, from the
# repository root after `make install`, within 8 minutes. It runs the CUDA test, the full-size scoring throughput
# (Qwen2.5-VL-3B architecture, random weights; with its ratio to the FLOP-bound limit) and clip-lora ViT-B/32
# training throughput in bf16, and writes the figures into benchmarks/README.md (commit them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA GPU is visible to torch')"
"$PY" -c "import torch; print('gpu:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
start=$SECONDS
timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_clip_lora.py -k cuda
timeout 210 "$PY" benchmarks/score_throughput.py --full-size --write
timeout 90 "$PY" benchmarks/policy_encoder.py --architecture vit-b-32 --device cuda --precision bf16 --groups 16 \
  --epochs 1 --write
echo "gpu_check: done in $((SECONDS - start)) s; the figures are in benchmarks/README.md"
