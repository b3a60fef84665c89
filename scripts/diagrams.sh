#!/usr/bin/env bash
# Renders every docs/architecture/*.dot with graphviz's dot into an SVG beside it (or into
# OUT_DIR), and fails if one does not render. The CTest test docs.diagrams runs it into the build
# tree, so a broken diagram source fails the test suite.
# Usage: scripts/diagrams.sh [OUT_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/docs/architecture}
dot=${DOT:-dot}
command -v "$dot" >/dev/null || { echo "diagrams: graphviz's dot not found (scripts/setup.sh installs it)" >&2; exit 2; }
mkdir -p "$out"
n=0
for f in "$root"/docs/architecture/*.dot; do
  svg="$out/$(basename "$f" .dot).svg"
  "$dot" -Tsvg "$f" -o "$svg.tmp"
  grep -q "<svg" "$svg.tmp" || { echo "diagrams: $f rendered no SVG" >&2; exit 1; }
  mv "$svg.tmp" "$svg"
  n=$((n + 1))
done
echo "diagrams: $n rendered into $out"
