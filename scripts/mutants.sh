#!/usr/bin/env bash
# Mutation testing of the safety logic: every patch in tests/mutants/ breaks one rule (its first
# line says which) and must make at least one of the test binaries it names ("# targets:") fail,
# run with its gtest filter ("# filter:", optional: e.g. leave out threaded tests that would
# only wait for real-time limits).
# Each patch is applied to a scratch copy of the tree (build/mutants/src), only those targets are
# rebuilt, they run, and the patch is reverted. Fails if a mutant survives, if a patch does not
# apply, or if the unmutated targets do not pass first (a kill would then mean nothing).
#
# Usage: scripts/mutants.sh [--check] [NAME...]   (default: every tests/mutants/*.patch)
#   --check       only check that every patch applies to the tree (a CTest test runs this)
#   MUTANTS_DIR   scratch folder (default build/mutants)
#   MUTANTS_JOBS  build parallelism (default: nproc)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${MUTANTS_DIR:-$root/build/mutants}
jobs=${MUTANTS_JOBS:-$(nproc)}
src=$work/src
bld=$work/build
start=$(date +%s)

check_only=0
if [[ ${1:-} == --check ]]; then
  check_only=1
  shift
fi
patches=()
if (($# > 0)); then
  for n in "$@"; do patches+=("$root/tests/mutants/$n.patch"); done
else
  patches=("$root"/tests/mutants/*.patch)
fi
for p in "${patches[@]}"; do
  [[ -f $p ]] || { echo "mutants: no such mutant: $p" >&2; exit 2; }
done

if ((check_only)); then
  bad=0
  for p in "${patches[@]}"; do
    if ! (cd "$root" && patch -p1 --dry-run -s -f <"$p" >/dev/null 2>&1); then
      echo "mutants: $(basename "$p") no longer applies to the tree: update its context" >&2
      bad=1
    fi
  done
  ((bad == 0)) && echo "mutants: all ${#patches[@]} patches apply"
  exit $bad
fi

targets_of() { sed -n 's/^# targets: //p' "$1"; }
breaks_of() { sed -n 's/^# breaks: //p' "$1"; }
filter_of() { sed -n 's/^# filter: //p' "$1"; }

# The scratch copy: file times are kept, so a second run rebuilds only what changed.
mkdir -p "$src"
(cd "$root" && tar --exclude=./build --exclude=./.git -cf - .) | tar -xf - -C "$src"

all_targets=$(for p in "${patches[@]}"; do targets_of "$p"; done | tr ' ' '\n' | sort -u | tr '\n' ' ')
cmake -S "$src" -B "$bld" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPTRECLAIM_BUILD_BENCH=OFF \
  -DPTRECLAIM_BUILD_TOOLS=OFF >/dev/null
build() { cmake --build "$bld" -j "$jobs" --target $1 >"$work/build.log" 2>&1; }
binary() { find "$bld/tests" -type f -name "$1" -perm -u+x | head -1; }

# Runs the targets (with gtest filter $2, if any); prints the failed gtest names (or the binary,
# if it crashed), one per line.
run_targets() {
  local t bin out
  for t in $1; do
    bin=$(binary "$t")
    [[ -n $bin ]] || { echo "mutants: $t was not built" >&2; return 2; }
    if ! out=$(timeout 600 "$bin" --gtest_brief=1 --gtest_filter="${2:-*}" 2>&1); then
      printf '%s\n' "$out" >"$work/last-failure.$t.log"  # for a look when a kill surprises
      local failed
      failed=$(grep -o '^\[  FAILED  \] [A-Za-z0-9_/.]*' <<<"$out" | sort -u | sed 's/^\[  FAILED  \] //')
      if [[ -n $failed ]]; then echo "$failed"; else echo "$t (crashed or timed out)"; fi
    fi
  done
}

echo "mutants: building the unmutated targets ($all_targets)"
build "$all_targets" || { cat "$work/build.log"; exit 1; }
baseline=$(run_targets "$all_targets")
if [[ -n $baseline ]]; then
  echo "mutants: the unmutated tree fails already (logs: $work/last-failure.*.log):" >&2
  echo "$baseline" >&2
  exit 1
fi

survivors=0
printf '\n%-40s %-8s %s\n' "mutant" "result" "killed by (first 3) / what it breaks"
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  t0=$(date +%s)
  if ! patch -s -p1 -d "$src" --dry-run <"$p" >/dev/null; then
    echo "mutants: $name does not apply to this tree: update the patch" >&2
    exit 1
  fi
  patch -s -p1 -d "$src" <"$p"
  killed=""
  if ! build "$(targets_of "$p")"; then
    killed="(does not compile)"
    tail -20 "$work/build.log" >&2
    survivors=$((survivors + 1))
  else
    killed=$(run_targets "$(targets_of "$p")" "$(filter_of "$p")" || true)
  fi
  patch -s -R -p1 -d "$src" <"$p"
  secs=$(($(date +%s) - t0))
  if [[ -z $killed ]]; then
    survivors=$((survivors + 1))
    printf '%-40s %-8s %s\n' "$name" "SURVIVED" "$(breaks_of "$p")"
  elif [[ $killed == "(does not compile)" ]]; then
    printf '%-40s %-8s %s\n' "$name" "BROKEN" "the patch does not compile"
  else
    n=$(wc -l <<<"$killed")
    printf '%-40s %-8s %s\n' "$name" "killed" "$(head -3 <<<"$killed" | paste -sd' ') ($n tests, ${secs}s)"
  fi
done
# Leave the copy unmutated and built for the next run.
build "$all_targets" >/dev/null 2>&1 || true
echo
echo "mutants: ${#patches[@]} mutants, $survivors survived, $(($(date +%s) - start)) s"
((survivors == 0))
