#!/usr/bin/env python3
"""Prints reclaim_benchmark medians as ratios to the floors measured in the same run.

ratio: to BM_plain_free (same thread count), the floor of the issue's goal.
vs_flush: benchmarks whose caller invalidates after every retire, to BM_flush_then_free
          (invalidate, wait, free): the cost of the policy on top of the caller's own flush.

usage: ratios.py results.json   (from --benchmark_out=... --benchmark_out_format=json
                                  --benchmark_repetitions=N --benchmark_report_aggregates_only=true)
"""
import json
import re
import sys

rows = {}
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    if b.get("aggregate_name") != "median":
        continue
    m = re.match(r"(.*)/real_time/threads:(\d+)", b["run_name"])
    rows[(m.group(1), int(m.group(2)))] = b

print(f"{'benchmark (medians)':46} {'thr':>3} {'items/s':>10} {'ratio':>6} {'vs_flush':>8} "
      f"{'peak_pending':>12} {'held_sum':>8} {'p50_ns':>8} {'p99_ns':>8}")
for (name, thr), b in sorted(rows.items()):
    floor = rows[("BM_plain_free", thr)]["items_per_second"]
    vs = ""
    if "caller_flush" in name and ("BM_flush_then_free", thr) in rows:
        vs = f"{b['items_per_second'] / rows[('BM_flush_then_free', thr)]['items_per_second']:.2f}"
    print(f"{name:46} {thr:>3} {b['items_per_second']:>10.0f} {b['items_per_second'] / floor:>6.2f} "
          f"{vs:>8} {b.get('peak_pending', 0):>12.0f} {b.get('peak_held_sum', 0):>8.0f} "
          f"{b.get('p50_ns', 0):>8.0f} {b.get('p99_ns', 0):>8.0f}")
