#!/usr/bin/env bash
# Set up voiceprint in ./.venv: the CPU build of PyTorch first (a plain "torch" requirement
# would pull a multi-GB CUDA build), then the package with the extras named as arguments.
#   bash scripts/setup.sh              core only
#   bash scripts/setup.sh dev          + tests, lint, ONNX export, service, faiss, PostgreSQL
#                                      client, plots (everything CI needs)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "installing torch==${TORCH_VERSION} (CPU build)"
  "${PIP[@]}" "torch==${TORCH_VERSION}" 2>&1 | grep -v "^WARNING: Location" || true
fi
extras=""
case "${1:-}" in
  dev) extras="[dev,onnx,serve,scale,postgres,plots]" ;;
  "") extras="" ;;
  *) extras="[$1]" ;;
esac
echo "installing voiceprint${extras}"
"${PIP[@]}" -e ".${extras}" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, voiceprint; print('voiceprint', voiceprint.__version__, 'torch', torch.__version__)"
