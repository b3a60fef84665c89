#!/usr/bin/env bash
# Model-checks flush-epoch's protocol and the Xen seed's design with spin. What each check covers,
# and what the models abstract away: docs/flush-epoch.md, "What each check covers".
#
# Every property of a correct model must hold over its whole (bounded) state space; every mutant,
# finding and witness must give a trail, and the trail must break the property it names. Fails
# otherwise. Each check's pan output and trail (the model's printf events) go to OUT/<check>/.
#
# Usage: models/check.sh [OUT]       (OUT defaults to build/models)
#   MODEL_JOBS   pan runs at once (default 2)
#   MODEL_ONLY   a regex: run only the checks whose name matches
#   SPIN, PAN_CC the spin and C compiler to use (default: spin, cc)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../build/models}
jobs=${MODEL_JOBS:-2}
only=${MODEL_ONLY:-.}
spin=${SPIN:-spin}
cc=${PAN_CC:-cc}
if ! command -v "$spin" >/dev/null; then
  echo "check.sh: spin not found (apt-get install spin)" >&2
  exit 1
fi
command -v "$cc" >/dev/null || { echo "check.sh: no C compiler ($cc) for pan" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The violation a trail must show (EXPECT), as a regex on pan's first error line.
expect_re() {
  case $1 in
    S1) echo 'assertion violated 0 ' ;;         # a walk read a freed table (walk_freed)
    S2) echo 'fstate\[j\]==1' ;;                 # freed twice, or while still linked
    S3) echo 's3ok' ;;                          # freed before a covering invalidation completed
    spec) echo 'assertion violated 0 |fstate\[j\]==1|s3ok' ;;   # any of the three
    S4) echo '\(t==c\)' ;;                      # a tasklet ran on a CPU that does not own its list
    race) echo 'lbusy' ;;                       # two CPUs inside one unlocked list operation
    L1) echo 'acceptance cycle' ;;
    *) echo "$1" ;;                             # a witness: its condition
  esac
}

# One check: NAME MODEL MODE EXPECT DEFINES...
#   MODE    safety (DFS), bfs (breadth-first: the shortest trail) or ltl (L1: -a -f, weak fairness)
#   EXPECT  pass, or the violation the trail must show (expect_re)
check() {
  local name=$1 model=$2 mode=$3 expect=$4
  shift 4
  local dir=$out/$name
  rm -rf "$dir"
  mkdir -p "$dir"
  cd "$dir"
  # -O2 for the long runs that must pass; trails come quickly, so compile faster.
  local t0 t1 copts=(-w -DVECTORSZ=512) popts=(-m1000000)
  if [ "$expect" = pass ]; then copts+=(-O2); else copts+=(-O1); fi
  t0=$(date +%s.%N)
  case $mode in
    safety) copts+=(-DNOCLAIM -DSAFETY) ;;
    bfs) copts+=(-DNOCLAIM -DSAFETY -DBFS) ;;
    ltl) copts+=(-DNFAIR=3) popts+=(-a -f) ;;
  esac
  {
    echo "$spin -a $* $here/$model"
    echo "$cc ${copts[*]} -o pan pan.c && ./pan ${popts[*]}"
  } >cmd.txt
  if ! "$spin" -a "$@" "$here/$model" >spin.txt 2>&1 ||
    ! "$cc" "${copts[@]}" -o pan pan.c >cc.txt 2>&1; then
    echo "FAIL|$name|spin or cc failed, see $dir" >result.txt
    return 0
  fi
  ./pan "${popts[@]}" >pan.txt 2>&1 || true
  t1=$(date +%s.%N)
  local stored visited elapsed errors first what
  stored=$(sed -nE 's/^ *([0-9.e+]+) states, stored.*/\1/p' pan.txt | head -1)
  visited=$(sed -nE 's/.*states, stored \(([0-9.e+]+) visited\).*/\1/p' pan.txt | head -1)
  elapsed=$(sed -nE 's/^pan: elapsed time ([0-9.e+]+) seconds.*/\1/p' pan.txt | head -1)
  errors=$(sed -nE 's/.*errors: ([0-9]+).*/\1/p' pan.txt | head -1)
  first=$(grep -m1 -E '^pan:1: ' pan.txt | sed 's/^pan:1: //' || true)
  local wall
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  what="${stored:-?} states stored${visited:+ ($visited visited)}, pan ${elapsed:-?} s, wall $wall s"
  if grep -q -e 'max search depth too small' -e 'out of memory' pan.txt; then
    echo "FAIL|$name|search incomplete (depth or memory): $what" >result.txt
  elif [ "$expect" = pass ]; then
    if [ "${errors:-1}" = 0 ]; then
      echo "PASS|$name|$what" >result.txt
    else
      echo "FAIL|$name|expected to hold, got: $first; $what" >result.txt
    fi
  elif [ "${errors:-0}" = 0 ] || [ ! -f "$model.trail" ]; then
    echo "FAIL|$name|expected a trail, verified clean: $what" >result.txt
  elif ! grep -qE "$(expect_re "$expect")" <<<"$first"; then
    echo "FAIL|$name|a trail, but not the expected one: $first; $what" >result.txt
  else
    # The trail as the model's own events (printf), for people.
    "$spin" -t -k "$model.trail" "$@" "$here/$model" 2>&1 |
      sed -nE '/^ltl /d; /^ *$/d; s/^ +//; /^spin: trail ends/q; p' >trail.txt || true
    echo "TRAIL|$name|$first; $what" >result.txt
  fi
}

# Name; model; mode; expectation; defines. The longest first, so the jobs end together.
specs=(
  # flush-epoch, correct: S2, S3, S1 (walks), S5, the ring's own assertions, no deadlock.
  "fe.L1;flush_epoch.pml;ltl;pass;-DNO_SB"
  "fe.safety.hotplug;flush_epoch.pml;safety;pass;-DHOTPLUG=1 -DOPS0=1 -DOPS1=2"
  "fe.safety;flush_epoch.pml;safety;pass;"
  "fe.safety.batch1;flush_epoch.pml;safety;pass;-DBATCH_FRAMES=1"
  "fe.L1.hotplug;flush_epoch.pml;ltl;pass;-DHOTPLUG=1 -DOPS0=1 -DOPS1=1"
  # poll_spacing_ns: a reap may skip its poll on the strength of another CPU's.
  "fe.safety.spacing;flush_epoch.pml;safety;pass;-DSPACING"
  "fe.L1.spacing;flush_epoch.pml;ltl;pass;-DSPACING -DNO_SB -DOPS0=1 -DOPS1=1"
  # flush-epoch mutants: the spec (S2/S3) and the hardware alone (a walk into a freed table).
  "fe.mutant.stamp_before_unlink;flush_epoch.pml;bfs;spec;-DSTAMP_BEFORE_UNLINK"
  "fe.mutant.stamp_before_unlink.walk;flush_epoch.pml;bfs;S1;-DSTAMP_BEFORE_UNLINK -DNO_S2_ASSERT -DNO_S3_ASSERT"
  "fe.mutant.stamp_at_open;flush_epoch.pml;bfs;spec;-DSTAMP_AT_OPEN"
  "fe.mutant.stamp_at_open.walk;flush_epoch.pml;bfs;S1;-DSTAMP_AT_OPEN -DNO_S2_ASSERT -DNO_S3_ASSERT"
  "fe.mutant.no_fence;flush_epoch.pml;bfs;spec;-DNO_FENCE"
  "fe.mutant.no_fence.walk;flush_epoch.pml;bfs;S1;-DNO_FENCE -DNO_S2_ASSERT -DNO_S3_ASSERT"
  "fe.mutant.one_unit;flush_epoch.pml;bfs;spec;-DONE_UNIT"
  "fe.mutant.one_unit.walk;flush_epoch.pml;bfs;S1;-DONE_UNIT -DNO_S2_ASSERT -DNO_S3_ASSERT"
  "fe.mutant.cover_no_range;flush_epoch.pml;bfs;spec;-DCOVER_NO_RANGE"
  "fe.mutant.cover_no_range.walk;flush_epoch.pml;bfs;S1;-DCOVER_NO_RANGE -DNO_S2_ASSERT -DNO_S3_ASSERT"
  "fe.mutant.full_ge;flush_epoch.pml;bfs;spec;-DFULL_GE"
  "fe.mutant.full_ge.walk;flush_epoch.pml;bfs;S1;-DFULL_GE -DNO_S2_ASSERT -DNO_S3_ASSERT"
  "fe.mutant.adopt_open;flush_epoch.pml;bfs;spec;-DADOPT_OPEN -DHOTPLUG=1 -DOPS0=1 -DOPS1=1"
  "fe.mutant.adopt_open.walk;flush_epoch.pml;bfs;S1;-DADOPT_OPEN -DHOTPLUG=1 -DOPS0=1 -DOPS1=1 -DNO_S2_ASSERT -DNO_S3_ASSERT"
  "fe.mutant.timer_no_poll;flush_epoch.pml;ltl;L1;-DTIMER_NO_POLL -DOPS0=1 -DOPS1=1"
  "fe.mutant.wait_no_seen;flush_epoch.pml;safety;\\(rn\\[0\\]==0\\);-DSPACING -DWAIT_NO_SEEN -DHOTPLUG=1 -DOPS0=1 -DOPS1=2"
  # Witnesses: what the properties rely on is reached.
  "fe.witness.full_ahead;flush_epoch.pml;bfs;cseen<cfseen;-DW_FULL_AHEAD"
  "fe.witness.ride;flush_epoch.pml;bfs;bcov;-DW_RIDE"
  "fe.witness.timer_free;flush_epoch.pml;bfs;in_timer;-DW_TIMER_FREE"
  "fe.witness.backpressure;flush_epoch.pml;bfs;!\(1\);-DW_BACKPRESSURE -DHOTPLUG=1 -DOPS0=1 -DOPS1=2"
  "fe.witness.adopt_open;flush_epoch.pml;bfs;qopen;-DW_ADOPT_OPEN -DHOTPLUG=1 -DOPS0=1 -DOPS1=2"
  "fe.witness.keep_open;flush_epoch.pml;bfs;qopen;-DW_KEEP_OPEN"
  "fe.witness.spaced_free;flush_epoch.pml;bfs;spaced;-DSPACING -DW_SPACED_FREE"
  "fe.witness.down_failed_free;flush_epoch.pml;bfs;hp_failed;-DW_FAILED_FREE -DHOTPLUG=1 -DOPS0=1 -DOPS1=2"
  # The Xen seed: faithful (plain tasklet, downs succeed) holds; so does CPU_DOWN_FAILED fixed.
  "xen.safety;xen_tasklet.pml;safety;pass;"
  "xen.L1;xen_tasklet.pml;ltl;pass;"
  "xen.fixed_down_failed.safety;xen_tasklet.pml;safety;pass;-DDOWN_FAIL -DFIX_DOWN_FAILED"
  "xen.fixed_down_failed.L1;xen_tasklet.pml;ltl;pass;-DDOWN_FAIL -DFIX_DOWN_FAILED"
  # Findings: CPU_DOWN_FAILED runs CPU 1's tasklet on CPU 0; the softirq tasklet frees early.
  "xen.down_failed.wrong_cpu;xen_tasklet.pml;bfs;S4;-DDOWN_FAIL"
  "xen.down_failed.race;xen_tasklet.pml;bfs;race;-DDOWN_FAIL -DNDEBUG -DNO_S1_WALK -DNO_S2_ASSERT -DNO_S3_ASSERT"
  "xen.down_failed.early_free;xen_tasklet.pml;bfs;S3;-DDOWN_FAIL -DNDEBUG -DNO_RACE_ASSERT -DNO_S2_ASSERT"
  "xen.down_failed.walk;xen_tasklet.pml;bfs;S1;-DDOWN_FAIL -DNDEBUG -DNO_RACE_ASSERT -DNO_S2_ASSERT -DNO_S3_ASSERT"
  "xen.down_failed.double_free;xen_tasklet.pml;bfs;S2;-DDOWN_FAIL -DNDEBUG -DNO_RACE_ASSERT -DNO_S1_WALK -DNO_S3_ASSERT"
  "xen.softirq.early_free;xen_tasklet.pml;bfs;S3;-DSOFTIRQ"
  "xen.softirq.walk;xen_tasklet.pml;bfs;S1;-DSOFTIRQ -DNO_S2_ASSERT -DNO_S3_ASSERT"
)

start=$(date +%s)
names=()
for spec in "${specs[@]}"; do
  IFS=';' read -r name model mode expect defs <<<"$spec"
  [[ $name =~ $only ]] || continue
  names+=("$name")
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  # shellcheck disable=SC2086  # defs is a list of -D options
  (check "$name" "$model" "$mode" "$expect" $defs) &
done
wait

failed=0
for name in "${names[@]}"; do
  if [ -f "$out/$name/result.txt" ]; then
    IFS='|' read -r verdict n rest <"$out/$name/result.txt"
  else
    verdict=FAIL n=$name rest="no result (the check itself failed)"
  fi
  printf '%-40s %-5s %s\n' "$n" "$verdict" "$rest"
  [ "$verdict" = FAIL ] && failed=$((failed + 1))
done
echo "models: ${#names[@]} checks, $failed failed, $(($(date +%s) - start)) s wall" \
  "(MODEL_JOBS=$jobs); trails and pan output in $out"
[ "$failed" -eq 0 ]
