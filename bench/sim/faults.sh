#!/usr/bin/env bash
# The fault-injection figures (docs/engine.md, "Fault injection"): every bench/sim/faults-*.toml
# under every policy (`ptreclaim compare`) for seeds 1..SEEDS, then one row per fault, scenario
# and safe policy: runs, frames freed early (S3 findings), frames leaked, the highest peak of
# pending frames against the bound, the faults injected, and how the runs ended.
#
# Usage: bench/sim/faults.sh [PTRECLAIM] [SEEDS] [OPS]
#   PTRECLAIM  the tool (default build/release/tools/ptreclaim/ptreclaim)
#   SEEDS      seeds 1..SEEDS (default 5); OPS operations per CPU (default 500)
#   FAULTS_OUT folder for the JSON results (default build/faults-figures)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tool=${1:-$root/build/release/tools/ptreclaim/ptreclaim}
seeds=${2:-5}
ops=${3:-500}
out=${FAULTS_OUT:-$root/build/faults-figures}
mkdir -p "$out"
for f in "$root"/bench/sim/faults-*.toml; do
  for ((seed = 1; seed <= seeds; ++seed)); do
    # compare exits non-zero when a canary is caught or a run fails: the JSON says which.
    "$tool" compare --scenario "$f" --seed "$seed" --ops "$ops" -q \
      --json "$out/$(basename "$f" .toml).$seed.json" || true
  done
done
python3 - "$out" <<'PY'
import glob, json, os, re, sys
rows = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "faults-*.json"))):
    for r in json.load(open(path))["runs"]:
        if not r["policy_safe"]:
            continue
        key = (r["scenario"], r["policy"])
        a = rows.setdefault(key, {"runs": 0, "early": 0, "leaks": 0, "peak": 0, "bound": 0,
                                  "ok": 0, "failed": [], "inj": {}})
        a["runs"] += 1
        s3 = r["invariants"]["S3"]
        if s3["checked"] and not s3["held"]:
            m = re.match(r"(\d+) early frees", s3["reason"])
            a["early"] += int(m.group(1)) if m else 1
        a["leaks"] += r["leaks"]["leaked_frames"]
        a["peak"] = max(a["peak"], r["reclaim"]["peak_pending"])
        a["bound"] = r["reclaim"]["pending_bound"]
        if r["all_held"]:
            a["ok"] += 1
        else:
            bad = [k for k, v in r["invariants"].items() if v["checked"] and not v["held"]]
            a["failed"].append("seed %d: %s" % (r["seed"], " ".join(bad)))
        for k, v in r["faults"].items():
            if isinstance(v, bool):
                continue
            a["inj"][k] = a["inj"].get(k, 0) + v
def injected(i):
    parts = []
    for k, label in (("ite", "ITE"), ("iqe", "IQE"), ("resubmissions", "resubmitted"),
                     ("stalls", "stalls"), ("slow_waits", "slow waits"),
                     ("alloc_failures", "alloc failures"),
                     ("teardown_translations", "teardown walks")):
        if i.get(k):
            parts.append("%d %s" % (i[k], label))
    return ", ".join(parts) or "-"
print("| scenario | policy | runs | freed early | leaked | peak pending / bound | injected (all runs) | ended |")
print("|---|---|---|---|---|---|---|---|")
for (sc, pol), a in sorted(rows.items()):
    ended = "%d/%d all invariants held" % (a["ok"], a["runs"])
    if a["failed"]:
        ended += "; " + "; ".join(a["failed"])
    print("| %s | %s | %d | %d | %d | %d / %d | %s | %s |" % (
        sc, pol, a["runs"], a["early"], a["leaks"], a["peak"], a["bound"], injected(a["inj"]),
        ended))
PY
