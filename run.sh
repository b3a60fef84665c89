#!/usr/bin/env bash
# Sets up (installs missing Debian packages), builds the release preset and runs the main job:
# `ptreclaim` with its defaults (the tour: the Xen and the Linux case under every policy). Arguments are
# passed to ptreclaim, e.g. ./run.sh compare --scenario dma-storm --report out/
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target ptreclaim  # only the tool: tests build with ./test.sh
exec build/release/tools/ptreclaim/ptreclaim "$@"
