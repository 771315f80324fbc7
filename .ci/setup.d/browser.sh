#!/usr/bin/env bash
# Extra CI step (run by .ci/setup.sh with the venv path as $1): a real browser for the UI test.
# Debian chromium (headless, driven by playwright-core without its browser download).
# Idempotent. apt-get needs root (CI runs as root); without it the browser test skips itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "browser.sh: not root, cannot apt-get install chromium; the browser test will skip" >&2
  fi
fi
NODE_DIR=.cache/node
if command -v npm >/dev/null 2>&1; then
  if [ ! -f "$NODE_DIR/node_modules/playwright-core/package.json" ]; then
    mkdir -p "$NODE_DIR"
    [ -f "$NODE_DIR/package.json" ] || echo '{"name":"wan-stream-browser-test","private":true}' > "$NODE_DIR/package.json"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$NODE_DIR" --no-audit --no-fund --silent playwright-core@1
  fi
else
  echo "browser.sh: npm missing; the browser test will skip" >&2
fi
echo "browser ready: $(ls /usr/bin/chromium 2>/dev/null || echo none), playwright-core in $NODE_DIR"
