#!/usr/bin/env bash
# Installs the Debian packages ptreclaim needs, only when some are missing. Idempotent.
set -euo pipefail

packages=(
  cmake ninja-build g++ clang clang-format clang-tidy libclang-rt-14-dev  # toolchains, libFuzzer
  googletest libgtest-dev libgmock-dev libbenchmark-dev librapidcheck-dev # tests, benchmarks
  libcli11-dev nlohmann-json3-dev libfmt-dev libtomlplusplus-dev           # the tool
  liburcu-dev libxenium-dev                                                # comparison peers
  gnuplot-nox                                                              # plots in reports
  parallel                                                                 # sharded campaigns
  spin                                                                     # model checks (models/)
  graphviz                                                                 # architecture diagrams
  chromium                                                                 # the report in a browser (test)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup: need root to run: apt-get install -y ${missing[*]}" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done" >&2
