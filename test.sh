#!/usr/bin/env bash
# Sets up (installs missing Debian packages), builds the debug preset (all checks on) and runs
# every test with CTest. Usage: ./test.sh [preset]   (debug by default; asan, tsan, clang, release)
set -euo pipefail
cd "$(dirname "$0")"
preset="${1:-debug}"
bash scripts/setup.sh
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset"
ctest --preset "$preset"
