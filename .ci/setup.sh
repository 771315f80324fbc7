#!/usr/bin/env bash
# Builds the test environment in .venv (idempotent): torch 2.14.1 + torchvision 0.29.1 (a CUDA build
# that runs on the CPU; ComfyUI needs torchvision), the pack's dependencies, and the independent
# reference implementations used by the parity tests (official Wan code `wan22` without its deps,
# diffusers, transformers).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
[ -x "$PY" ] || python3 -m venv "$VENV"
"$PY" -c "import torch, torchvision" 2>/dev/null || "$PY" -m pip install -q torch==2.14.1 torchvision==0.29.1
"$PY" -m pip install -q -r requirements-test.txt
"$PY" -c "import importlib.util as u; assert u.find_spec('wan')" 2>/dev/null || "$PY" -m pip install -q --no-deps wan22==2.2.11
for extra in .ci/setup.d/*.sh; do [ -e "$extra" ] && bash "$extra" "$VENV"; done
echo "test environment ready: $VENV"
