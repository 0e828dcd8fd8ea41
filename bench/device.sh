#!/usr/bin/env bash
# The torch engine's CUDA path end to end on a small model: serve, train, requantize.
#
#   bash bench/device.sh            # on a machine with an NVIDIA GPU and the project installed
#
# Prints the GPU, then per step its seconds and figures (tokens/s, loss, bytes on the
# device, agreement of CUDA with CPU logits); exits non-zero at the first step that fails.
# Results go in docs/minds.md ("CUDA"); until it has run there, that path is unverified.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$PY" bench/cuda_check.py "$@"
