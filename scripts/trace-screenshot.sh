#!/usr/bin/env bash
# Renders a window of a ptreclaim trace to a PNG with headless Chromium and scripts/trace-view.html
# (a minimal viewer; the trace itself opens in the Perfetto UI or chrome://tracing).
# Usage: scripts/trace-screenshot.sh TRACE.json OUT.png [FROM_US TO_US]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
trace="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
out="$2"; from="${3:-0}"; to="${4:-60}"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --allow-file-access-from-files \
  --user-data-dir="$profile" --window-size=1420,560 --screenshot="$out" \
  "file://$here/trace-view.html?trace=$trace&from=$from&to=$to" 2>/dev/null
